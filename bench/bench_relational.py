"""Learn the relation, not the content: scene AP on the ``relational`` synthetic variant.

On ``manifests.synth.generate(..., variant="relational")`` every movie draws its scene content
and camera set-ups afresh, so only within-movie similarity marks a scene. This bench trains the
scene model (``--config``, default ``scene-small``) with and without ``relation_features`` on
``--train-sizes`` training movies (2–3 ``--seeds``), always validating on the same val movies and
testing on the same test movies, and prints every model AP beside two parameter-free baselines
on those test movies:

* consecutive cosine distance: 1 − cos(shot, next shot), modality-averaged, per-movie
  standardised features (``unsupervised.band_similarity``);
* windowed best match ±4: 1 − the best similarity between a shot of (i−4, i] and one of
  (i, i+4] (``unsupervised.cut_novelty``).

The set: ``--movies`` movies of one seed; test = the first ``--test`` movies, val = the next
``--val``, train = the next max(train sizes) (a smaller train size takes a prefix).
Usage::

    python bench/bench_relational.py [--out DIR] [--train-sizes 16,50] [--seeds 0,1]
        [--epochs 3] [--arms base,relation] [--variant relational] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mega_pipe.extractors.registry import model_set_dims
from mega_pipe.manifests.features import FeatureFolder
from mega_pipe.manifests.schema import read_manifest, write_manifest
from mega_pipe.manifests.synth import generate
from mega_pipe.model import unsupervised as U
from mega_pipe.model.metrics import scene_metrics
from mega_pipe.model.train import evaluate, train

ARMS = {  # arm name -> top-level config overrides
    "base": {"relation_features": False},
    "relation": {"relation_features": True},
}


def _record(entry, prob) -> dict:
    times = FeatureFolder(entry.features).read_shot_times()
    return {"movie_id": entry.movie_id, "prob": np.asarray(prob, float).tolist(),
            "label": list(entry.scene_labels),
            "shot_frames": np.stack([times["start_frame"], times["end_frame"]], 1).tolist()}


def baselines(entries) -> dict:
    """AP/F1 of the two parameter-free baselines on ``entries``."""
    recs: dict[str, list] = {"consecutive cosine": [], "best match ±4": []}
    for e in entries:
        feats = U.folder_features(e.features)
        band = U.band_similarity(feats, 1)[:, 0]
        recs["consecutive cosine"].append(_record(e, np.r_[np.clip((1 - band[:-1]) / 2, 0, 1), 1.0]))
        recs["best match ±4"].append(_record(e, np.r_[np.clip(U.cut_novelty(feats, 4) / 2, 0, 1), 1.0]))
    return {k: scene_metrics(v) for k, v in recs.items()}


def make_set(work: Path, args) -> tuple[Path, list]:
    n = args.test + args.val + max(args.train_sizes)
    manifest = work / "synth" / "manifest.jsonl"
    if not manifest.exists() or len(read_manifest(manifest)) < n:   # reuse a set (movie i is the same)
        generate(work / "synth", n, seed=args.data_seed, modalities=model_set_dims("tiny"), variant=args.variant)
    entries = read_manifest(manifest)[:n]
    for i, e in enumerate(entries):
        e.split = "test" if i < args.test else "val" if i < args.test + args.val else "train"
    return manifest, entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--variant", default="relational")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--test", type=int, default=12)
    ap.add_argument("--val", type=int, default=4)
    ap.add_argument("--train-sizes", default="16,50")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--arms", default="base,relation")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--config", default="scene-small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.train_sizes = [int(x) for x in args.train_sizes.split(",")]
    torch.set_num_threads(args.threads)
    work = args.out or Path(tempfile.mkdtemp(prefix="mega-relational-"))
    manifest, entries = make_set(work, args)
    test = [e for e in entries if e.split == "test"]
    base = baselines(test)
    report = {"variant": args.variant, "test_movies": len(test), "epochs": args.epochs,
              "baselines": {k: {"ap": v["ap"], "f1": v["f1"]} for k, v in base.items()}, "runs": []}
    print(json.dumps(report["baselines"]), flush=True)
    train_entries = [e for e in entries if e.split == "train"]
    for size in args.train_sizes:
        subset = [e for e in entries if e.split != "train"] + train_entries[:size]
        path = work / f"manifest_train{size}.jsonl"
        write_manifest(path, subset)
        for arm in args.arms.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                out = work / f"run_{arm}_n{size}_s{seed}"
                t0 = time.perf_counter()
                summary = train("scene", path, out, epochs=args.epochs, seed=seed, config=args.config,
                                config_overrides=ARMS[arm], progress=False, device="cpu")
                result = evaluate(summary["best_checkpoint"], path, "test", device="cpu")["metrics"]
                row = {"arm": arm, "train_movies": size, "seed": seed, "ap": result["ap"], "f1": result["f1"],
                       "best_epoch": summary["best_epoch"], "wall_s": round(time.perf_counter() - t0, 1)}
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"baselines on the {len(test)} test movies: "
          + ", ".join(f"{k} AP {v['ap']:.3f}" for k, v in base.items()))
    for size in args.train_sizes:
        for arm in args.arms.split(","):
            aps = [r["ap"] for r in report["runs"] if r["arm"] == arm and r["train_movies"] == size]
            if aps:
                print(f"{arm:9s} {size:3d} train movies: AP {np.mean(aps):.3f} ± {np.std(aps):.3f} "
                      f"({', '.join(f'{a:.3f}' for a in aps)})")


if __name__ == "__main__":
    main()
