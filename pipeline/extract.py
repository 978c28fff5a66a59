"""``mega-pipe extract``: one movie in, one feature folder out (docs/contract.md).

Plan, single pass, write:

1. probe the file (streams, exact rates, rotation);
2. **plan** (``plan.py``): what the movie has, which outputs are cached (cache keys stored in
   the folder's files), what must be computed;
3. if shots or any frame/clip/audio modality must be computed: **one decode pass**
   (``decode_pass.py``): every frame goes to the shot detector and the per-second sampler,
   whose samples are encoded in batches while decoding continues; the audio, decoded in the same
   FFmpeg process, is cut into 10 s windows and encoded as it arrives;
4. subtitle cues and synopsis sentences are embedded with the sentence encoder;
5. **write**: samples files, pooling (each shot gets the mean of the samples overlapping it,
   ``pooling.py``) into ``shots.parquet``, and the run manifest last.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from mega_pipe.manifests.atomic import exclusive_lock
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.features import (
    CONTRACT_VERSION,
    FeatureFolder,
    samples_table,
    shots_table,
    synopsis_table,
)
from mega_pipe.manifests.provenance import code_version
from mega_pipe.model.device import resolve_device

from .decode_pass import decode_pass
from .plan import MoviePlan, plan_movie
from .pooling import pool
from .probe import ProbeInfo, probe
from .shots import DetectorConfig, Shot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractConfig:
    model_set: str = "paper"
    modalities: tuple[str, ...] | None = None   # None: every modality the movie has
    device: str = "auto"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    frame_size: int | None = None               # short side of the decoded frames; None: auto
    weights_dirs: tuple[Path, ...] = ()
    offline: bool = False
    allow_download: bool = False
    progress: bool = True
    audio_track: str | None = None     # --audio-track: a number among the audio streams or a
    subtitle_track: str | None = None  # language tag; likewise --subtitle-track. None: automatic
    strict: bool = False               # warnings fail the movie (not recorded: changes no output)

    def to_json(self) -> dict:
        return {"model_set": self.model_set, "modalities": list(self.modalities or []) or None,
                "device": self.device, "detector": self.detector.to_json(),
                "frame_size": self.frame_size, "offline": self.offline,
                "audio_track": self.audio_track, "subtitle_track": self.subtitle_track}


@dataclass(frozen=True)
class MovieInput:
    video: Path
    subtitles: Path | None = None
    synopsis: Path | None = None
    movie_id: str | None = None
    synopsis_lines: bool = False     # the synopsis file has one sentence per line

    @property
    def source(self) -> Path:
        """The path that names this input (in messages, and the default movie id's stem)."""
        return Path(self.video)


class ExtractorPool:
    """Builds extractors on first need and keeps them for the whole run (several movies).

    Planning a run (entries, samplings, weights lookup) needs no deep-learning library; torch and
    the model libraries are imported only when :meth:`get` builds a model, so decoding can start
    first (docs/decoding.md)."""

    def __init__(self, cfg: ExtractConfig, default_modalities: Sequence[str] = ()):
        from mega_pipe.extractors.registry import REGISTRY, VIDEO_MODALITIES

        self.cfg = cfg
        # An explicit --device cuda is checked now (one clear error before any work); "auto" is
        # resolved when the first model is built.
        self._device = None if cfg.device == "auto" else resolve_device(cfg.device)
        self.entries = {e.modality: e for e in REGISTRY.values() if e.model_set == cfg.model_set}
        if not self.entries:
            raise MegaPipeError(f"unknown model set {cfg.model_set!r}")
        requested = cfg.modalities or default_modalities or VIDEO_MODALITIES
        unknown = [m for m in requested if m not in self.entries]
        if unknown:
            raise MegaPipeError(f"unknown modality {', '.join(unknown)} "
                                f"(available: {', '.join(self.entries)})")
        self.modalities = tuple(requested)
        # The working resolution depends on the model set, not on the modality subset, so that
        # adding or dropping a modality never invalidates the cached features of the others.
        self.frame_size = cfg.frame_size or max(
            (e.input_size for e in self.entries.values()), default=224)
        self._built: dict = {}

    def check(self, modalities: Sequence[str]) -> None:
        """Fail now (WeightsNotFoundError listing every searched path) if weights are missing."""
        from mega_pipe.extractors.registry import locate_weights

        locate_weights(self.cfg.model_set, [m for m in modalities if m not in self._built],
                       weights_dirs=self.cfg.weights_dirs, offline=self.cfg.offline,
                       allow_download=self.cfg.allow_download)

    def get(self, modalities: Sequence[str]) -> dict:
        from mega_pipe.extractors.registry import build_extractors

        missing = [m for m in modalities if m not in self._built]
        if missing:
            self._device = self._device or resolve_device(self.cfg.device)
            self._built.update(build_extractors(
                self.cfg.model_set, missing, device=self._device,
                weights_dirs=self.cfg.weights_dirs, offline=self.cfg.offline,
                allow_download=self.cfg.allow_download))
        return {m: self._built[m] for m in modalities}

    def meta(self, m: str) -> dict:
        """Provenance of modality ``m``: the digest of the weights actually loaded when the
        extractor was built in this run, else the registry's published digest (the cache key
        uses the registry entry, which identifies the weights)."""
        e = self.entries[m]
        built = self._built.get(m)
        return {"dim": e.dim, "model_id": e.name,
                "weights_sha256": built.weights_sha256 if built else e.sha256,
                "sampling": self.sampling(m)}

    def sampling(self, m: str) -> str:
        """What one sample of modality ``m`` is (the modality table, through its entry)."""
        return self.entries[m].sampling.value


def movie_id_of(inp) -> str:
    """``--id``, else the stem of the input's ``source`` (the video; a key-frame folder)."""
    return inp.movie_id or Path(inp.source).stem


def extract_movie(inp: MovieInput, out_root: Path, cfg: ExtractConfig,
                  extractors: ExtractorPool) -> dict:
    """Extract one movie into ``out_root/<movie_id>/``; return its manifest (with
    ``"up_to_date": True`` added when every stage was cached and nothing was written).
    Written through :func:`write_movie_folder` (lock, staging)."""
    video = Path(inp.video)

    def work(folder: FeatureFolder) -> dict:
        info = probe(video, cfg.audio_track, cfg.subtitle_track)
        return _extract(inp, info, folder, movie_id_of(inp), cfg, extractors)

    return write_movie_folder(out_root, movie_id_of(inp), work)


def write_movie_folder(out_root: Path, movie_id: str,
                       work: Callable[[FeatureFolder], dict]) -> dict:
    """Run ``work`` (which fills a feature folder and returns its manifest) on
    ``out_root/<movie_id>/``, the way every extraction writes a movie folder.

    The folder is locked while it is written (``.<movie_id>.lock`` beside it): a second run on
    the same folder fails at once with one line. A new folder is built as ``.<movie_id>.partial``
    and renamed into place when complete, so a failed or killed run leaves no folder that looks
    like a movie's. An existing folder is updated in place: ``work`` makes it lose its manifest
    first (reads as incomplete) and keeps its valid files as cache for the next run."""
    out_root = Path(out_root)
    out = out_root / movie_id
    with exclusive_lock(out_root / f".{movie_id}.lock", str(out)):
        if out.exists():
            return work(FeatureFolder(out))
        staging = out_root / f".{movie_id}.partial"
        shutil.rmtree(staging, ignore_errors=True)      # left by a killed run
        try:
            manifest = work(FeatureFolder(staging))
            staging.rename(out)
            return manifest
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _extract(inp: MovieInput, info: ProbeInfo, folder: FeatureFolder, movie_id: str,
             cfg: ExtractConfig, extractors: ExtractorPool) -> dict:
    t_run = time.perf_counter()
    plan = plan_movie(inp, info, folder, movie_id, cfg, extractors)
    if plan.up_to_date:
        _check_strict(cfg, movie_id, plan.previous.get("warnings", []))
        log.info("%s: up to date (all stages cached)", movie_id)
        return {**plan.previous, "up_to_date": True}
    folder.invalidate()          # incomplete until the new manifest is written
    folder.path.mkdir(parents=True, exist_ok=True)
    extractors.check(plan.todo + plan.text_modalities)   # missing weights: fail before decoding
    _check_strict(cfg, movie_id, plan.warnings)

    stages: dict[str, dict] = {}
    shots, end_time, n_frames, samples = _shots_and_samples(plan, info, cfg, extractors, stages)
    plan.warnings += stages["decode"]["warnings"]
    plan.warnings += _timeline_warnings(info, end_time, plan.cues)
    samples.update(_encode_text(plan, extractors, stages))
    models = _write_features(plan, extractors, shots, samples, stages)
    _check_strict(cfg, movie_id, plan.warnings)
    manifest = _manifest(plan, inp, info, cfg, extractors, models, end_time, n_frames, stages)
    manifest["seconds"] = time.perf_counter() - t_run
    folder.write_manifest(manifest)
    return manifest


def _shots_and_samples(plan: MoviePlan, info: ProbeInfo, cfg: ExtractConfig,
                       extractors: ExtractorPool, stages: dict) -> tuple:
    """The shots, timeline and freshly decoded samples: from the decode pass when anything must
    be decoded, else from the cached shots (whose decode warnings still hold)."""
    samples: dict[str, tuple] = {}
    if plan.needs_decoding:
        result = decode_pass(info, cfg, extractors, plan.decode_modalities,
                             detect=not plan.shots_cached)
        stages["decode"] = result.stats
        samples, shots = result.samples, result.shots
        end_time, n_frames = result.end_time, result.n_frames
    if not plan.needs_decoding or plan.shots_cached:
        shots = [Shot(*row) for row in zip(*plan.folder.read_shot_times().values())]
    if not plan.needs_decoding:
        end_time = shots[-1].end_s if shots else 0.0
        n_frames = int(shots[-1].end_frame) if shots else 0
        stages["decode"] = {"cached": True, "warnings": (plan.previous or {}).get(
            "stages", {}).get("decode", {}).get("warnings", [])}
    stages["shots"] = {"key": plan.shots_key, "count": len(shots), "cached": plan.shots_cached,
                       **cfg.detector.to_json()}
    return shots, end_time, n_frames, samples


def _encode_text(plan: MoviePlan, extractors: ExtractorPool, stages: dict) -> dict:
    """Embed the subtitle cues (returned as fresh samples) and the synopsis (written now)."""
    built = extractors.get(plan.text_modalities)
    samples = {}
    if "subtitle" in plan.todo:
        t0 = time.perf_counter()
        texts = [c.text for c in plan.cues]
        samples["subtitle"] = (np.array([c.start_s for c in plan.cues]),
                               np.array([c.end_s for c in plan.cues]),
                               np.asarray(built["subtitle"].encode(texts), np.float32), texts)
        stages["subtitle"] = {"seconds": time.perf_counter() - t0, "samples": len(texts),
                              "source": plan.cue_source}
    syn = plan.synopsis
    if syn and syn["todo"]:
        t0 = time.perf_counter()
        vecs = np.asarray(built["subtitle"].encode(syn["sentences"]), np.float32)
        plan.folder.write_synopsis(synopsis_table(
            plan.movie_id, syn["sentences"], vecs,
            {**extractors.meta("subtitle"), "sampling": "sentence"}, cache_key=syn["key"]))
        stages["synopsis"] = {"seconds": time.perf_counter() - t0,
                              "sentences": len(syn["sentences"])}
    elif syn:
        stages["synopsis"] = {"cached": True, "sentences": len(syn["sentences"])}
    return samples


def _write_features(plan: MoviePlan, extractors: ExtractorPool, shots: list, samples: dict,
                    stages: dict) -> dict:
    """Write the new samples files, then pool every modality into shots.parquet; return the
    provenance of the movie's modalities."""
    folder, t0 = plan.folder, time.perf_counter()
    meta = {m: extractors.meta(m) for m in extractors.modalities}
    for m in plan.wanted:   # provenance: computed now -> the loaded weights; cached -> as recorded
        meta[m] = extractors.meta(m) if m in plan.todo else folder.samples_meta(m) or meta[m]
    starts = np.array([s.start_s for s in shots])
    ends = np.array([s.end_s for s in shots])
    pooled = {}
    for m in plan.wanted:
        if m in samples:
            ts, te, vecs, *texts = samples[m]
            folder.write_samples(samples_table(plan.movie_id, m, meta[m], ts, te, vecs,
                                               texts[0] if texts else None,
                                               cache_key=plan.keys[m]), m)
            stages.setdefault(m, {})["samples"] = len(ts)
        else:
            cached = folder.read_samples(m)
            ts, te, vecs = cached["t_start"], cached["t_end"], cached["vectors"]
            stages[m] = {"cached": True, "samples": len(ts)}
        if len(ts) == 0:
            plan.warnings.append(f"{m}: no samples")
        pooled[m] = pool(starts, ends, ts, te, vecs)
    folder.write_shots(shots_table(plan.movie_id, shots, pooled, meta, plan.absent,
                                   cache_key=plan.pool_key, detection_key=plan.shots_key))
    stages["pool"] = {"seconds": time.perf_counter() - t0}
    return {m: meta[m] for m in plan.wanted}


def _manifest(plan: MoviePlan, inp: MovieInput, info: ProbeInfo, cfg: ExtractConfig,
              extractors: ExtractorPool, models: dict, end_time: float, n_frames: int,
              stages: dict) -> dict:
    video = Path(inp.video)
    stat = video.stat()
    return {
        "contract": CONTRACT_VERSION,
        "movie_id": plan.movie_id,
        "code_version": code_version(),
        "source": {"path": str(video.resolve()), "size": stat.st_size, "mtime": stat.st_mtime,
                   "fingerprint": plan.fingerprint, "subtitles": plan.cue_source,
                   "synopsis": str(Path(inp.synopsis).resolve()) if inp.synopsis else None},
        "probe": info.to_json(),
        "timeline": {"duration_s": end_time, "frames": n_frames},
        "config": {**cfg.to_json(), "frame_size": extractors.frame_size},
        "models": models,
        "modalities": plan.wanted,
        "pool_key": plan.pool_key,
        "stages": stages,
        "outputs": plan.folder.outputs(plan.wanted, synopsis=plan.synopsis is not None),
        "warnings": plan.warnings,
    }


# Decoding that ends more than this much before the headers' duration is reported. Headers are
# not exact: the container's duration covers every stream (audio often runs a little past the
# last frame), and where a container stores none FFmpeg estimates it from the bit rate, off by a
# few per cent. Whole-second / 2 % gaps are beyond that noise, while a file cut short (a broken
# download or copy) typically loses far more.
SHORT_DECODE_S, SHORT_DECODE_FRACTION = 1.0, 0.02


def _timeline_warnings(info: ProbeInfo, end_time: float, cues: list | None) -> list[str]:
    """Checks that need the decoded timeline's end: decoding that stopped clearly short of the
    headers' duration (a truncated or damaged file), and subtitle cues outside the movie."""
    out = []
    expected = info.expected_duration()
    if expected and expected - end_time > max(SHORT_DECODE_S, SHORT_DECODE_FRACTION * expected):
        out.append(f"decoding ended at {end_time:.1f} s of the {expected:.1f} s the file's "
                   f"headers announce: the file is truncated or damaged")
    outside = sum(c.end_s <= 0 or c.start_s >= end_time for c in cues or [])
    if outside:
        where = f"{outside} of {len(cues)} cues lie outside the movie's 0–{end_time:.1f} s"
        out.append(f"subtitles: {where} (wrong file or offset?)" if outside * 2 <= len(cues)
                   else f"subtitles: {where}: most do not fit this movie (another movie's "
                   f"subtitles, or an offset?)")
    return out


def _check_strict(cfg: ExtractConfig, movie_id: str, warnings: Sequence[str]) -> None:
    """--strict: any warning fails the movie."""
    if cfg.strict and warnings:
        raise MegaPipeError(f"{movie_id}: failed (--strict) on {len(warnings)} warning"
                            f"{'s' * (len(warnings) > 1)}: {'; '.join(warnings)}")


def run_extract(inputs: Sequence, out_root: Path, cfg: ExtractConfig, *, debug: bool = False,
                extract_one: Callable | None = None, default_modalities: Sequence[str] = (),
                isolate: bool = True) -> tuple[list[dict], list[tuple[str, str]]]:
    """Extract several movies; a failing movie is reported (an error on the log) and the others
    carry on, unless ``debug`` or not ``isolate`` (a one-movie command): then its exception
    propagates (the CLI prints it as one line, or the traceback with ``--debug``).

    ``extract_one(inp, out_root, cfg, pool)`` extracts one input (default :func:`extract_movie`,
    a movie file; ``keyframes.extract_keyframes`` takes key-frame folders);
    ``default_modalities`` apply when ``cfg.modalities`` is None (default: the video
    modalities)."""
    extract_one = extract_one or extract_movie
    from mega_pipe.extractors.errors import ExtractorError, WeightsNotFoundError

    ids: dict[str, list[str]] = {}
    for inp in inputs:
        ids.setdefault(movie_id_of(inp), []).append(str(inp.source))
    bad = [k for k in ids if not k or k.startswith(".") or "/" in k or os.sep in k]
    if bad:
        raise MegaPipeError(f"movie id {bad[0]!r} cannot name a folder (empty, hidden or a path)")
    clashes = {k: v for k, v in ids.items() if len(v) > 1}
    if clashes:
        k, v = next(iter(clashes.items()))
        raise MegaPipeError(f"{len(v)} inputs would share the output folder {Path(out_root) / k} "
                            f"({', '.join(v)}): extract them in separate runs with --id or --out")
    extractors = ExtractorPool(cfg, default_modalities)
    root_existed = Path(out_root).exists()
    done, failed = [], []
    try:
        for inp in inputs:
            try:
                done.append(extract_one(inp, out_root, cfg, extractors))
            except WeightsNotFoundError:
                raise                      # no movie can be processed: stop the run
            except Exception as e:         # this movie failed; the others carry on
                if debug or not isolate:
                    raise
                msg = (str(e) if isinstance(e, (MegaPipeError, ExtractorError))
                       else f"{inp.source}: {type(e).__name__}: {e}")
                failed.append((str(inp.source), msg))
                log.error(msg)
    finally:
        if not done and not root_existed:
            with contextlib.suppress(OSError):      # leave no empty output root behind
                Path(out_root).rmdir()
    return done, failed
