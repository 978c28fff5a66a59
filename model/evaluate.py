"""``mega-pipe eval``: score a checkpoint on one split of a manifest.

The records and metrics are the task's (``tasks.py``), the same code that validates every
training epoch; the checkpoint is read by ``checkpoint.py``.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..manifests.atomic import check_output_dir, write_json, write_text
from ..manifests.errors import MegaPipeError
from ..manifests.schema import read_manifest
from .checkpoint import describe_checkpoint, load_checkpoint
from .data import check_sentence_dims
from .metrics import FLAT_WARNING, flat_fraction
from .tasks import task_for, warn_unless_above_prior

log = logging.getLogger(__name__)


def evaluate(
    checkpoint: str | os.PathLike,
    manifest: str | os.PathLike,
    split: str = "test",
    out: str | os.PathLike | None = None,
    *,
    device: str = "auto",
) -> dict:
    """Score a checkpoint on one split of a manifest.

    Writes ``eval_<task>_<split>.json`` (metrics) and ``predictions_<task>_<split>.jsonl`` (one
    record per movie, the input of ``mega-pipe score``) to ``out`` (default: the checkpoint's
    folder) and returns the metrics with the paths. Act gold is the shot-level ``tp_shots``
    (docs/training.md "Evaluation gold"); synopsis gold the sentence-level ``tp_sentences``.
    """
    out_dir = Path(out) if out is not None else Path(checkpoint).parent
    check_output_dir(out_dir, "--out" if out is not None else "the checkpoint's folder")
    ckpt = load_checkpoint(checkpoint, device)
    task = task_for(ckpt.task)
    entries = [e for e in read_manifest(manifest) if e.split == split]
    if not entries:
        raise MegaPipeError(f"the manifest has no movie with split {split!r}")
    movies = task.load(entries, ckpt.modalities, dims=ckpt.info["modality_dims"])
    check_sentence_dims(movies, ckpt.info["sentence_dim"], f"checkpoint {checkpoint}: ")
    movies = [ckpt.normalizer.apply(m) for m in movies]
    task.check_gold(movies)
    records = task.records(ckpt.model, ckpt.cfg, movies, ckpt.device, ckpt.synopsis_model)
    metrics = task.scored(records)
    stem = f"{ckpt.task}_{split}"   # one --out can hold the evaluations of both tasks
    metrics_path, records_path = out_dir / f"eval_{stem}.json", out_dir / f"predictions_{stem}.jsonl"
    write_text(records_path, "".join(json.dumps(r) + "\n" for r in records))
    result = {
        "task": ckpt.task,
        "split": split,
        "checkpoint": str(checkpoint),
        "epoch": ckpt.info["epoch"],
        "model": describe_checkpoint(ckpt.cfg, ckpt.info["epoch"]),
        "n_movies": len(movies),
        "metrics": metrics,
        "predictions": str(records_path),
    }
    if ckpt.task in ("act", "synopsis"):   # per-TP distributions: say when they carry nothing
        warn_unless_above_prior(metrics, f"{ckpt.task} checkpoint on the {split} split")
        result["flat_posteriors"] = flat = flat_fraction(records)
        if flat >= FLAT_WARNING:
            log.warning("%.0f%% of the turning-point distributions are flat (entropy ≈ log N): "
                        "their argmax picks among near-equal scores, not a prediction", 100 * flat)
    write_json(metrics_path, result)
    return {**result, "eval_json": str(metrics_path)}
