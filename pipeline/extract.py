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
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..extractors.entry import KEYFRAME_MODALITIES
from ..manifests.atomic import check_output_dir
from ..manifests.errors import MegaPipeError
from ..manifests.features import CONTRACT_VERSION, FeatureFolder, synopsis_table
from ..manifests.provenance import code_version
from .decode_pass import decode_pass
from .inputs import ExtractConfig, MovieInput, check_ids, movie_id_of, read_catalogue
from .keyframes import extract_keyframes, keyframe_inputs
from .models import ExtractorPool
from .plan import MoviePlan, plan_movie
from .probe import ProbeInfo, probe
from .shots import Shot
from .write import (
    begin_writing,
    check_strict,
    finish_movie,
    up_to_date,
    write_features,
    write_movie_folder,
)

log = logging.getLogger(__name__)


def extract_movie(inp: MovieInput, out_root: Path, cfg: ExtractConfig,
                  extractors: ExtractorPool) -> dict:
    """Extract one movie into ``out_root/<movie_id>/``; return its manifest (with
    ``"up_to_date": True`` added when every stage was cached and nothing was written).
    Written through :func:`write_movie_folder` (lock, staging)."""
    video = Path(inp.video)
    cfg = inp.config(cfg)

    def work(folder: FeatureFolder) -> dict:
        info = probe(video, cfg.audio_track, cfg.subtitle_track)
        return _extract(inp, info, folder, movie_id_of(inp), cfg, extractors)

    return write_movie_folder(out_root, movie_id_of(inp), work)


def _extract(inp: MovieInput, info: ProbeInfo, folder: FeatureFolder, movie_id: str,
             cfg: ExtractConfig, extractors: ExtractorPool) -> dict:
    t_run = time.perf_counter()
    plan = plan_movie(inp, info, folder, movie_id, cfg, extractors)
    _check_strict_absent(plan, cfg)
    cached = up_to_date(plan, cfg)
    if cached is not None:
        return cached
    begin_writing(plan, cfg, extractors, plan.todo + plan.text_modalities)
    stages: dict[str, dict] = {}
    shots, end_time, n_frames, samples = _shots_and_samples(plan, info, cfg, extractors, stages)
    plan.warnings += stages["decode"]["warnings"]
    plan.warnings += _timeline_warnings(info, end_time, plan.cues)
    samples.update(_encode_text(plan, extractors, stages))
    meta = {m: extractors.meta(m, used=m not in plan.absent) for m in extractors.modalities}
    models, _ = write_features(plan, shots, samples, meta, stages)
    manifest = _manifest(plan, inp, info, cfg, extractors, models, end_time, n_frames, stages)
    manifest["seconds"] = time.perf_counter() - t_run
    stages["process"] = {"max_rss_mb": _max_rss_mb()}
    return finish_movie(plan, cfg, manifest)


def _check_strict_absent(plan: MoviePlan, cfg: ExtractConfig) -> None:
    """--strict and a requested modality the movie lacks (no audio stream, no subtitles): the
    movie fails, in one line that also says how to go on (leave the modality out)."""
    if not (cfg.strict and plan.absent):
        return
    try:
        check_strict(cfg, plan.movie_id, plan.warnings)
    except MegaPipeError as e:
        lacking = " and ".join(plan.absent)
        how = (f"with --modalities {','.join(plan.wanted)}" if plan.wanted else
               "(the movie has none of the requested modalities)")
        raise MegaPipeError(f"{e}; to go on without {lacking}, leave "
                            f"{'it' if len(plan.absent) == 1 else 'them'} out {how}") from None


def _max_rss_mb() -> float | None:
    """This process's peak resident memory so far (MB; FFmpeg's own is in stages.decode)."""
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except (ImportError, OSError):
        return None


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


def extract_inputs(cfg: ExtractConfig, videos: Sequence[str | os.PathLike] = (), *,
                   subtitles: Path | None = None, synopsis: Path | None = None,
                   movie_id: str | None = None, synopsis_lines: bool = False,
                   movienet: Path | None = None, keyframes: Path | None = None,
                   shot_file: Path | None = None) -> tuple[list, Callable, tuple[str, ...]]:
    """What ``mega-pipe extract`` was given: the inputs, the function that extracts one of them
    and the default modalities. Movie files (``videos``: files, folders, globs, catalogue lists,
    ``inputs.read_catalogue``) or MovieNet key frames (a ``movienet`` root, or one movie's
    ``keyframes`` folder and ``shot_file``)."""
    if movienet or keyframes or shot_file:
        if subtitles or synopsis or cfg.subtitle_track or cfg.audio_track:
            raise MegaPipeError("key frames have no audio or subtitles: --subtitles, --synopsis, "
                                "--audio-track and --subtitle-track do not apply")
        return (keyframe_inputs(movienet, keyframes, shot_file, videos, movie_id),
                extract_keyframes, KEYFRAME_MODALITIES)
    if not videos:
        raise MegaPipeError("give VIDEO ..., or MovieNet key frames with --movienet ROOT or "
                            "--keyframes DIR --shot-file FILE")
    inputs = read_catalogue(videos)
    if len(inputs) > 1 and (subtitles or synopsis or movie_id):
        raise MegaPipeError("--subtitles, --synopsis and --id apply to a single VIDEO (a "
                            "catalogue list gives them per movie)")
    if len(inputs) == 1:
        inputs = [dataclasses.replace(inputs[0], subtitles=subtitles or inputs[0].subtitles,
                                      synopsis=synopsis or inputs[0].synopsis,
                                      movie_id=movie_id or inputs[0].movie_id,
                                      synopsis_lines=synopsis_lines or inputs[0].synopsis_lines)]
    return inputs, extract_movie, ()


def run_extract(inputs: Sequence, out_root: Path, cfg: ExtractConfig, *,
                extract_one: Callable | None = None, default_modalities: Sequence[str] = (),
                extractors: ExtractorPool | None = None) -> list[dict]:
    """Extract movies one after the other with one set of models; the first failure propagates
    (the CLI prints it as one line, or the traceback with ``--debug``). Several movies that must
    carry on past a failure are a catalogue run (``catalogue.py``).

    ``extract_one(inp, out_root, cfg, pool)`` extracts one input (default :func:`extract_movie`,
    a movie file; ``keyframes.extract_keyframes`` takes key-frame folders);
    ``default_modalities`` apply when ``cfg.modalities`` is None (default: the video
    modalities); ``extractors``: the models to use (default: built for this run)."""
    check_output_dir(out_root, "--out")
    check_ids(inputs)
    extract_one = extract_one or extract_movie
    extractors = extractors or ExtractorPool(cfg, default_modalities)
    root_existed = Path(out_root).exists()
    done: list[dict] = []
    try:
        for inp in inputs:
            done.append(extract_one(inp, out_root, cfg, extractors))
    finally:
        if not done and not root_existed:
            with contextlib.suppress(OSError):      # leave no empty output root behind
                Path(out_root).rmdir()
    return done
