"""The tail every extraction shares (docs/architecture.md, stage "write"), for a movie file
(extract.py) and for MovieNet key frames (keyframes.py) alike: the movie folder written under a
lock and staged, the samples files written or reused, every modality pooled into
``shots.parquet``, ``--strict`` applied, and the run manifest written last."""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..manifests.atomic import exclusive_lock
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder, samples_table, shots_table
from .inputs import ExtractConfig
from .models import ExtractorPool
from .plan import MoviePlan
from .pooling import pool

log = logging.getLogger(__name__)


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


def up_to_date(plan: MoviePlan, cfg: ExtractConfig) -> dict | None:
    """The folder's manifest (marked ``"up_to_date": True``) when every stage is cached, after
    ``--strict`` has judged the warnings recorded with it; None when there is work to do."""
    if not plan.up_to_date:
        return None
    check_strict(cfg, plan.movie_id, plan.previous.get("warnings", []))
    log.info("%s: up to date (all stages cached)", plan.movie_id)
    return {**plan.previous, "up_to_date": True}


def begin_writing(plan: MoviePlan, cfg: ExtractConfig, extractors: ExtractorPool,
                  modalities: Sequence[str]) -> None:
    """Before any computing: the folder reads as incomplete until its new manifest is written,
    the weights of ``modalities`` are found (a missing file fails now, not after decoding), and
    the warnings so far pass ``--strict``."""
    plan.folder.invalidate()
    plan.folder.path.mkdir(parents=True, exist_ok=True)
    extractors.check(modalities)
    check_strict(cfg, plan.movie_id, plan.warnings)


def write_features(plan: MoviePlan, shots: list, samples: dict, meta: dict,
                   stages: dict) -> tuple[dict, dict]:
    """Write the new samples files (``samples``: modality -> (t_start, t_end, vectors[, texts]),
    computed in this run), read the cached ones, and pool every wanted modality into
    shots.parquet (each shot: the mean of the samples overlapping it, pooling.py).

    ``meta``: the provenance of every modality of the run as computed now; a cached modality
    keeps the provenance recorded with its samples. Returns the provenance of the movie's
    modalities and the pooled (vectors, counts) by modality."""
    folder, t0, c0 = plan.folder, time.perf_counter(), time.process_time()
    clock = {"write": [0.0, 0.0], "pool": [0.0, 0.0]}     # stage -> [wall, CPU] seconds

    def charge(stage: str, w: float, c: float) -> tuple[float, float]:
        now_w, now_c = time.perf_counter(), time.process_time()
        clock[stage][0] += now_w - w
        clock[stage][1] += now_c - c
        return now_w, now_c

    meta = dict(meta)
    for m in plan.wanted:   # provenance: computed now -> the loaded weights; cached -> as recorded
        if m not in plan.todo:
            meta[m] = folder.samples_meta(m) or meta[m]
    starts = np.array([s.start_s for s in shots])
    ends = np.array([s.end_s for s in shots])
    pooled = {}
    w, c = time.perf_counter(), time.process_time()
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
        w, c = charge("write", w, c)
        pooled[m] = pool(starts, ends, ts, te, vecs)
        w, c = charge("pool", w, c)
    folder.write_shots(shots_table(plan.movie_id, shots, pooled, meta, plan.absent,
                                   cache_key=plan.pool_key, detection_key=plan.shots_key))
    charge("write", w, c)
    stages["pool"] = {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                      "account": {k: {"wall": round(v[0], 3), "cpu": round(v[1], 3)}
                                  for k, v in clock.items()}}
    return {m: meta[m] for m in plan.wanted}, pooled


def finish_movie(plan: MoviePlan, cfg: ExtractConfig, manifest: dict) -> dict:
    """Apply ``--strict`` to the movie's warnings, then write its manifest (last: the folder is
    complete from here on)."""
    check_strict(cfg, plan.movie_id, plan.warnings)
    plan.folder.write_manifest(manifest)
    return manifest


def check_strict(cfg: ExtractConfig, movie_id: str, warnings: Sequence[str]) -> None:
    """--strict: any warning fails the movie."""
    if cfg.strict and warnings:
        raise MegaPipeError(f"{movie_id}: failed (--strict) on {len(warnings)} warning"
                            f"{'s' * (len(warnings) > 1)}: {'; '.join(warnings)}")
