"""Learning check: does ``mega-pipe train`` learn the planted structure of the synthetic benchmark?

Generates a synthetic set (``mega_pipe.manifests.synth``, as ``mega-pipe manifest synth`` does:
the tiny extractor set's modalities and dimensions), trains both tasks through the public
``train``/``evaluate`` API, and prints held-out (test split) numbers next to simple baselines:

* scene: AP of MEGA vs. the AP of "1 − cosine similarity of a shot and the next shot" on the
  normalised, concatenated features (how separable boundaries are without learning);
* act: TA/PA/D of MEGA vs. the position-only baseline that predicts every TP at its mean
  normalised position over the training movies (MEGA Tab. 3 "Distribution position"). Trained
  twice: ``act`` with the shot-level gold of the training movies (direct TP loss plus the
  synopsis losses) and ``act_synopsis`` with synopsis labels only, as on TRIPOD, where the shots
  learn through synchronisation and distillation alone (supp. Sec. 4-5).

Also reports training samples/s (scene: 17-shot windows; act: movies). Usage::

    python bench/bench_train.py [--out DIR] [--movies 80] [--seed 0] [--device auto]
                                [--tasks scene,act,act_synopsis]
                                [--scene-config scene-small] [--act-config act-small]

The models are the packaged CPU-sized configs ``scene-small`` and ``act-small`` by default
(``--scene-config`` / ``--act-config`` take a packaged name or a JSON file; the paper-size
``scene`` and ``act`` configs are far too slow for a 2-core CPU benchmark).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from mega_pipe.extractors.registry import model_set_dims
from mega_pipe.manifests.schema import read_manifest, write_manifest
from mega_pipe.manifests.synth import generate
from mega_pipe.model.data import Normalizer, load_entries
from mega_pipe.model.evaluate import evaluate
from mega_pipe.model.metrics import act_metrics, scene_metrics
from mega_pipe.model.train import TrainOptions, train


def scene_baseline(manifest: Path, modalities: list[str]) -> dict:
    """Untrained boundary score: 1 − cos(shot, next shot) on train-normalised features."""
    entries = read_manifest(manifest)
    train_movies = load_entries([e for e in entries if e.split == "train"], modalities)
    norm = Normalizer.fit(train_movies, modalities)
    records = []
    for movie in load_entries([e for e in entries if e.split == "test"], modalities):
        x = np.concatenate(list(norm.apply(movie).features.values()), axis=1)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        nxt = x[np.minimum(np.arange(len(x)) + 1, len(x) - 1)]
        records.append({
            "movie_id": movie.movie_id,
            "prob": np.clip((1.0 - (x * nxt).sum(axis=1)) / 2.0, 0.0, 1.0).tolist(),
            "label": [None if y < 0 else int(y) for y in movie.scene_labels],
            "shot_frames": movie.shot_frames.tolist(),
        })
    return scene_metrics(records)


def position_baseline(manifest: Path) -> dict:
    """Predict each TP at its mean normalised gold position over the training movies."""
    entries = read_manifest(manifest)

    def n_shots(entry) -> int:
        return len(entry.scene_labels)

    train_pos = np.array([[np.mean(g) / n_shots(e) for g in e.tp_shots] for e in entries if e.split == "train"])
    mean_pos = train_pos.mean(axis=0)
    records = []
    for e in (e for e in entries if e.split == "test"):
        n = n_shots(e)
        posteriors = np.zeros((5, n))
        posteriors[np.arange(5), np.minimum((mean_pos * n).astype(int), n - 1)] = 1.0
        records.append({"movie_id": e.movie_id, "posteriors": posteriors.tolist(), "gold": e.tp_shots})
    return act_metrics(records)


def synopsis_only(manifest: Path) -> Path:
    """A copy of the manifest whose training movies have no shot-level TP gold."""
    entries = read_manifest(manifest)
    for entry in entries:
        if entry.split == "train":
            entry.tp_shots = None
    path = manifest.with_name("manifest_synopsis_only.jsonl")
    write_manifest(path, entries)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--movies", type=int, default=80)
    ap.add_argument("--tasks", default="scene,act,act_synopsis", help="which runs (comma-separated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--scene-config", default="scene-small", help="packaged name or JSON (paper: scene)")
    ap.add_argument("--act-config", default="act-small", help="packaged name or JSON (paper: act)")
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="mega-bench-"))
    t0 = time.perf_counter()
    manifest = generate(work / "synth", args.movies, seed=args.seed, modalities=model_set_dims("tiny"),
                        overwrite=True)
    report: dict = {"movies": args.movies, "seed": args.seed, "generate_s": time.perf_counter() - t0}

    plans = {  # run name -> (task, config, training manifest)
        "scene": ("scene", args.scene_config, manifest),
        "act": ("act", args.act_config, manifest),
        "act_synopsis": ("act", args.act_config, synopsis_only(manifest)),
    }
    for name in args.tasks.split(","):
        task, config, train_manifest = plans[name]
        t0 = time.perf_counter()
        summary = train(task, train_manifest, work / f"run_{name}",
                        TrainOptions(device=args.device, seed=args.seed, config=config))
        result = evaluate(summary["best_checkpoint"], manifest, "test", device=args.device)
        report[name] = {
            "test": result["metrics"],
            "best_epoch": summary["best_epoch"],
            "train_samples_per_s": summary["samples_per_s"],
            "wall_s": time.perf_counter() - t0,
            "config": config,
        }
        if task == "scene":
            report[name]["baseline_adjacent_cosine"] = scene_baseline(manifest, summary["modalities"])
        else:
            report[name]["baseline_position_only"] = position_baseline(manifest)
    print(json.dumps(report, indent=2))
    if "scene" in report:
        s = report["scene"]
        print(f"scene: test AP {s['test']['ap']:.3f} (adjacent-cosine baseline "
              f"{s['baseline_adjacent_cosine']['ap']:.3f}), {s['train_samples_per_s']:.0f} windows/s")
    for name in ("act", "act_synopsis"):
        if name in report:
            a, b = report[name]["test"], report[name]["baseline_position_only"]
            print(f"{name}: test TA {a['ta']:.3f} PA {a['pa']:.3f} D {a['d']:.3f} (position-only TA "
                  f"{b['ta']:.3f} PA {b['pa']:.3f} D {b['d']:.3f}), {report[name]['train_samples_per_s']:.2f} movies/s")


if __name__ == "__main__":
    main()
