"""``mega-pipe segment``: a movie in, ``boundaries.json`` out (schema: docs/boundaries.md).

It runs ``extract`` for the modalities the checkpoints need (cached features are reused), then the
scene model (a boundary probability per shot; a scene ends at every shot whose probability is
≥ the threshold) and the act model (five turning-point distributions over shots, decoded jointly
so that TP1 < TP2 < … < TP5, which delimit the six acts). Without a checkpoint the scenes come
from shot coherence and the turning points from TRIPOD's position prior, snapped to scene
starts (``mega_pipe.model.unsupervised``, docs/unsupervised.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path

import numpy as np

from ..extractors.registry import MODALITIES, MODEL_SETS, entry_for
from ..manifests.atomic import check_output_dir, check_output_file, warn_replacing
from ..manifests.boundaries import (
    ACTS,
    build_boundaries,
    read_boundaries,
    scenes_from_probabilities,
    write_boundaries,
)
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder
from ..manifests.provenance import code_version
from ..manifests.synth import format_modalities
from ..model.checkpoint import describe_checkpoint
from ..model.metrics import FLAT_WARNING, flat_fraction
from ..model.predict import load_checkpoint, predict_act, predict_scene, synopsis_guided
from ..model.prior import tp_prior
from ..model.unsupervised import (
    ACT_METHOD,
    DEFAULT_WINDOW,
    SCENE_METHOD,
    coherence_scenes,
    folder_features,
    snap_to_scenes,
)
from .export import apply_chapters, check_apply_target, source_of
from .cache import file_fingerprint, stage_key
from .extract import run_extract
from .inputs import ExtractConfig, MovieInput, movie_id_of
from .models import ExtractorPool

log = logging.getLogger(__name__)


def check_dims(ckpt, features: Path, which: str) -> None:
    """Refuse features whose dimensions differ from the checkpoint's, saying what to do: the
    ``--models`` set that gives the checkpoint's dimensions, or else the synthetic set that
    matches the movie's features (to train a checkpoint that fits them)."""
    meta = FeatureFolder(features).modality_meta()
    _refuse_other_dims(ckpt, {m: v["dim"] for m, v in meta.items() if v.get("dim") is not None},
                       {m: str(v.get("model_id")) for m, v in meta.items()}, which)


def check_model_set(cfg: ExtractConfig, ckpts: dict) -> None:
    """Before any work: the model set that will extract the movie (``--models``) must give the
    dimensions each checkpoint was trained on. Checkpoints do not record which models made their
    training features (a synthetic set has none), so the dimensions are all there is to go by;
    the error names the checkpoint's dimensions and the model set that gives them, if any."""
    wanted = set(cfg.modalities) if cfg.modalities is not None else set(MODALITIES)
    mods = [m for m in MODALITIES if m in wanted]
    have = {m: entry_for(cfg.model_set, m).dim for m in mods}
    for task, ckpt in ckpts.items():
        _refuse_other_dims(ckpt, have, {}, task, cfg.model_set)


def _refuse_other_dims(ckpt, have: dict, models: dict, which: str,
                       model_set: str | None = None) -> None:
    want = dict(ckpt.model.modality_dims)
    wrong = [m for m in want if have.get(m) not in (None, want[m])]
    if not wrong:
        return
    sets = [s for s in MODEL_SETS
            if all(m in MODALITIES and entry_for(s, m).dim == d for m, d in want.items())]
    if sets:
        advice = (f"use --models {sets[0]}, the model set whose features have these dimensions"
                  if model_set else f"extract with --models {sets[0]}")
    else:
        fits = format_modalities(have)
        advice = ("no model set gives the checkpoint's dimensions: train one on features like the "
                  f"movie's, e.g. `mega-pipe manifest synth OUT --modalities {fits}`")
    given = f" (--models {model_set})" if model_set else \
        f" (model {', '.join(models.get(m, 'None') for m in wrong)})"
    raise MegaPipeError(
        f"{which} checkpoint expects {format_modalities({m: want[m] for m in wrong})} but the "
        f"movie's features are {format_modalities({m: have[m] for m in wrong})}{given}: {advice}")


_WITHOUT = "; predicted without it"     # ends a ``missing`` line of a modality (boundaries.json)


def missing_modalities(ckpts: dict, features: Path) -> list[str]:
    """One ``missing`` line per checkpoint modality the movie lacks (predicted without it)."""
    folder = FeatureFolder(features)
    have, absent = folder.modalities(), folder.absent_modalities()
    wanted = dict.fromkeys(m for c in ckpts.values() for m in c.modalities)
    return [f"{m}: {absent.get(m, 'not in the feature folder')}{_WITHOUT}" for m in wanted if m not in have]


def missing_message(line: str) -> str:
    """How ``segment`` reports one ``missing`` line of boundaries.json: scenes or acts were not
    predicted; a modality was not there and the prediction was made without it; else a note."""
    part, _, why = line.partition(": ")
    if part in ("scenes", "acts"):
        return f"not predicted: {line}"
    if why.endswith(_WITHOUT):
        return f"predicted without {part}: {why.removesuffix(_WITHOUT)}"
    return f"note: {line}"


def _unsupervised_scenes(features: Path, n_scenes: int | None, missing: list[str]) -> dict | None:
    """Scenes without a checkpoint: shot coherence (docs/unsupervised.md); None with < 2 shots."""
    feats = folder_features(features)
    n = FeatureFolder(features).n_shots()
    if n < 2 or not feats:
        missing.append(f"scenes: {'only 1 shot' if n < 2 else 'no modality to compare shots'}")
        return None
    got = coherence_scenes(feats, n_scenes)
    return {"prob": got["prob"], "ends": got["ends"], "threshold": None if n_scenes else 0.5,
            "method": {"name": SCENE_METHOD, "scenes": n_scenes or "auto",
                       "window": DEFAULT_WINDOW, "modalities": list(feats)}}


def _prior_turning_points(shots: dict, scene: dict | None, threshold: float) -> dict:
    """Turning points without a checkpoint: TRIPOD's position prior over shot index, restricted
    to scene starts when there are at least five scenes (docs/unsupervised.md)."""
    post = tp_prior(shots["start_s"], shots["end_s"], by="index")
    ends = None
    if scene is not None:
        ends = scene.get("ends") or [b for _, b, _ in scenes_from_probabilities(
            scene["prob"], threshold)]
    snapped = ends is not None and len(ends) >= 5
    if snapped:
        post = snap_to_scenes(post, ends)
    return {"posteriors": post,
            "method": {"name": ACT_METHOD, "position": "shot index",
                       "snapped_to_scenes": snapped}}


def _synopsis_unused(manifest: dict, why: str) -> None:
    """A synopsis given to a segment run that does not read it is said to be unused."""
    if (manifest.get("source") or {}).get("synopsis"):
        log.warning("%s: the synopsis is not used: %s (only act-sync checkpoints, trained with "
                    "synopsis_guidance, use the movie's synopsis: docs/training.md)",
                    manifest.get("movie_id"), why)


def _model(ckpt) -> dict:
    """What produced a checkpoint's predictions (``model.checkpoint.describe_checkpoint``)."""
    return {"model": describe_checkpoint(ckpt.cfg, ckpt.info["epoch"])}


def load_checkpoints(scene: Path | None, act: Path | None, device: str = "auto") -> dict:
    """The checkpoints given, by task, each checked to be of its task."""
    return {task: load_checkpoint(path, device, task=task, what=f"--{task}-checkpoint {path}")
            for task, path in (("scene", scene), ("act", act))
            if path is not None}    # without one: model/unsupervised.py (docs/unsupervised.md)


def predict_boundaries(manifest: dict, features: Path, ckpts: dict, threshold: float,
                       n_scenes: int | None = None, paths: dict | None = None) -> dict:
    """The ``boundaries.json`` document of one extracted movie (``manifest``: its extract
    manifest, ``features``: its feature folder), without its provenance. A part without a
    checkpoint comes from the checkpoint-free methods; ``n_scenes`` forces the scene count;
    ``paths``: the checkpoint files, by task, recorded in ``methods``."""
    if n_scenes is not None and n_scenes < 1:
        raise MegaPipeError(f"--scenes must be at least 1, got {n_scenes}")
    paths = paths or {}
    shots = {k: v.tolist() for k, v in FeatureFolder(features).read_shot_times().items()}
    missing = missing_modalities(ckpts, features)
    n_shots = len(shots["start_s"])
    if "scene" in ckpts:
        check_dims(ckpts["scene"], features, "scene")
        scene = {"prob": predict_scene(ckpts["scene"], features),
                 "method": {"name": "checkpoint", "checkpoint": str(paths.get("scene")),
                            "scenes": n_scenes or "threshold", **_model(ckpts["scene"])}}
        if n_scenes is not None:      # the N−1 most probable boundaries
            k = min(n_scenes, n_shots) - 1
            cuts = sorted(int(i) for i in np.argsort(-scene["prob"][:-1], kind="stable")[:k])
            scene.update(ends=cuts + [n_shots - 1], threshold=None)
    else:
        scene = _unsupervised_scenes(features, n_scenes, missing)
    if n_shots < len(ACTS):            # each act needs a shot of its own
        act = None
        missing.append(f"acts: only {n_shots} shot{'' if n_shots == 1 else 's'}; the five "
                       f"turning points and six acts need at least {len(ACTS)}")
    elif "act" in ckpts:
        check_dims(ckpts["act"], features, "act")
        guided = synopsis_guided(ckpts["act"], features)
        if ckpts["act"].cfg.synopsis_guidance and not guided:
            missing.append("synopsis: none (segment --synopsis); turning points from the shot model alone, "
                           "without the synopsis guidance its config asks for")
        elif not ckpts["act"].cfg.synopsis_guidance:
            _synopsis_unused(manifest, "the act checkpoint's config has no synopsis guidance")
        posteriors = np.asarray(predict_act(ckpts["act"], features))
        flat = flat_fraction([{"posteriors": posteriors}])
        if flat >= FLAT_WARNING:
            log.warning("%s: the act checkpoint's turning-point distributions are flat (entropy ≈ log N): "
                        "its turning points and acts pick among near-equal scores, not predictions",
                        manifest.get("movie_id"))
        act = {"posteriors": posteriors,
               "method": {"name": "checkpoint", "checkpoint": str(paths.get("act")),
                          "synopsis_guided": guided, "flat_posteriors": flat, **_model(ckpts["act"])}}
    else:
        _synopsis_unused(manifest, "without --act-checkpoint the turning points come from "
                         "TRIPOD's position prior")
        act = _prior_turning_points(shots, scene, threshold)
    return build_boundaries(manifest, features, shots, scene, act, missing, threshold)


def segment_movie(movie: MovieInput, out: Path, cfg: ExtractConfig, features_root: Path, *,
                  scene_checkpoint: Path | None = None, act_checkpoint: Path | None = None,
                  scene_threshold: float = 0.5, n_scenes: int | None = None,
                  chapters: Path | None = None, chapters_level: str | None = None,
                  ) -> tuple[dict, str | None]:
    """``mega-pipe segment``: extract ``movie`` (reusing cached features under
    ``features_root``) with the modalities the checkpoints need, predict its boundaries, write
    ``out``; with ``chapters``, also a copy of the movie with them as chapters. The checkpoints
    and outputs are checked before any work. Returns the document and the chapters' level."""
    check_output_file(out)
    check_output_dir(features_root, "--features")
    if chapters is not None:
        check_apply_target(movie.video, chapters, "--chapters")
    ckpts = load_checkpoints(scene_checkpoint, act_checkpoint, cfg.device)
    doc, _, _ = boundaries_of(movie, out, segment_config(cfg, ckpts), features_root, ckpts,
                              {"scene": scene_checkpoint, "act": act_checkpoint},
                              scene_threshold, n_scenes)
    if chapters is None:
        return doc, None
    src = source_of(doc, str(out))
    level = chapters_level or src.default_level(chapters=True)
    apply_chapters(src, level, movie.video, chapters)
    return doc, level


def segment_config(cfg: ExtractConfig, ckpts: dict) -> ExtractConfig:
    """The extraction config of a segment run: the modalities the checkpoints need, unless the
    user chose some; refused before any work when its model set cannot give the checkpoints'
    feature dimensions (:func:`check_model_set`)."""
    if cfg.modalities is None and ckpts:
        cfg = dataclasses.replace(cfg, modalities=tuple(dict.fromkeys(
            m for c in ckpts.values() for m in c.modalities)))
    check_model_set(cfg, ckpts)
    return cfg


def segment_unit(worker, inp) -> tuple[dict, bool]:
    """A catalogue ``segment``'s unit of work (``catalogue.CatalogueJob.unit``): the movie's
    boundaries into ``<out>/<id>.json``, with the worker's models and checkpoints (loaded on its
    first movie); returns the extraction manifest and whether the file was already up to date."""
    job = worker.job
    if "checkpoints" not in worker.state:
        worker.state["checkpoints"] = load_checkpoints(job.scene_checkpoint, job.act_checkpoint,
                                                       job.cfg.device)
    _, manifest, cached = boundaries_of(
        inp, job.output(movie_id_of(inp)), job.cfg, job.features, worker.state["checkpoints"],
        {"scene": job.scene_checkpoint, "act": job.act_checkpoint}, job.scene_threshold,
        job.n_scenes, extractors=worker.pool, skip_unchanged=True)
    return manifest, cached


def boundaries_of(movie: MovieInput, out: Path, cfg: ExtractConfig, features_root: Path,
                  ckpts: dict, paths: dict, scene_threshold: float, n_scenes: int | None, *,
                  extractors: ExtractorPool | None = None,
                  skip_unchanged: bool = False) -> tuple[dict, dict, bool]:
    """Extract ``movie`` (cached features reused), predict and write its ``boundaries.json`` at
    ``out``. Returns the document, the extraction manifest and whether ``out`` was already up
    to date (``skip_unchanged``: a file whose provenance key — features, checkpoint files,
    threshold, scene count — equals this run's is kept as it is: a catalogue rerun)."""
    [manifest] = run_extract([movie], features_root, cfg, extractors=extractors)
    features = Path(features_root) / manifest["movie_id"]
    key = stage_key(features=manifest["pool_key"], threshold=scene_threshold, scenes=n_scenes,
                    checkpoints={t: file_fingerprint(p) for t, p in paths.items() if p})
    if skip_unchanged and Path(out).is_file():
        with contextlib.suppress(MegaPipeError):
            old = read_boundaries(out)
            if old.get("provenance", {}).get("key") == key:
                return old, manifest, True
    doc = predict_boundaries(manifest, features, ckpts, scene_threshold, n_scenes, paths)
    doc["provenance"] = {
        "scene_checkpoint": str(paths["scene"]) if paths.get("scene") else None,
        "act_checkpoint": str(paths["act"]) if paths.get("act") else None,
        "features": str(features), "models": manifest["models"], "code_version": code_version(),
        "key": key}
    warn_replacing(out)
    write_boundaries(out, doc)
    return doc, manifest, False
