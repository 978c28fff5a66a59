"""Tab. 2a/2b-style ablations of MEGA on the planted synthetic benchmark, several seeds.

For every task, setting and seed: train the CPU-sized packaged config (``scene-small`` /
``act-small``) with the setting's model overrides through the public ``train`` API, score the
held-out test split with ``evaluate``, and append one JSON line to ``OUT/results.jsonl`` (so a
long sweep that is interrupted keeps what it measured). Parameter-free baselines on the same
test movies are written once per task:

* scene: 1 − cosine similarity of consecutive shots' (train-normalised, concatenated) features
  as the boundary score -> AP;
* act: every TP at its TRIPOD prior position (11.39/31.86/50.65/74.15/89.43 % of the movie,
  docs/unsupervised.md) -> TA/PA/D.

The act runs train on the default manifest (training movies carry shot-level ``tp_shots`` and
synopsis labels; docs/training.md "act"). Usage::

    python bench/bench_ablation.py --out DIR [--movies 40] [--seeds 0,1,2] [--tasks scene,act]
        [--settings default,no_align_pe,no_align_pe_in_bottleneck] [--epochs-scene N]
        [--epochs-act N] [--scenes LO,HI] [--summary]

``--summary`` prints the mean ± std table of ``OUT/results.jsonl`` and exits.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mega_pipe.extractors.registry import model_set_dims
from mega_pipe.manifests.schema import read_manifest
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.model.metrics import act_metrics
from mega_pipe.model.evaluate import evaluate
from mega_pipe.model.train import TrainOptions, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import scene_baseline  # noqa: E402  (the same adjacent-cosine baseline)

TRIPOD_PRIOR = (0.1139, 0.3186, 0.5065, 0.7415, 0.8943)   # the means of model/prior.py

SETTINGS = {   # name -> model-key overrides (on top of the packaged small config)
    "default": {},
    "no_align_pe": {"align_pe": False},                              # Tab. 2a
    "no_align_pe_in_bottleneck": {"align_pe_in_bottleneck": False},  # Tab. 2b
    "bin_mean_bottleneck": {"bottleneck_seed": "bin_mean"},          # the variants' seeded tokens (choice 4b)
}


def prior_baseline(manifest: Path) -> dict:
    """Every TP at its TRIPOD prior position (no training data used)."""
    records = []
    for e in (e for e in read_manifest(manifest) if e.split == "test"):
        n = len(e.scene_labels)
        post = np.zeros((5, n))
        post[np.arange(5), np.minimum((np.array(TRIPOD_PRIOR) * n).astype(int), n - 1)] = 1.0
        records.append({"movie_id": e.movie_id, "posteriors": post.tolist(), "gold": e.tp_shots})
    return act_metrics(records)


def summarise(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    runs = [r for r in rows if r.get("kind") == "run"]
    out = ["| task | setting | seeds | scene AP / act TA (mean ± std) | act PA | act D |", "|---|---|---|---|---|---|"]
    keys = sorted({(r["task"], r["setting"]) for r in runs})
    for task, setting in keys:
        rs = [r for r in runs if r["task"] == task and r["setting"] == setting]
        main = np.array([r["test"]["ap" if task == "scene" else "ta"] for r in rs])
        cell = f"{main.mean():.3f} ± {main.std(ddof=1) if len(main) > 1 else 0:.3f}"
        pa = d = "–"
        if task == "act":
            pa_v = np.array([r["test"]["pa"] for r in rs]); d_v = np.array([r["test"]["d"] for r in rs])
            pa, d = f"{pa_v.mean():.3f}", f"{d_v.mean():.3f}"
        out.append(f"| {task} | {setting} | {','.join(str(r['seed']) for r in rs)} | {cell} | {pa} | {d} |")
    for r in rows:
        if r.get("kind") == "baseline":
            m = r["metrics"]
            val = f"AP {m['ap']:.3f}" if r["task"] == "scene" else f"TA {m['ta']:.3f} PA {m['pa']:.3f} D {m['d']:.3f}"
            out.append(f"| {r['task']} | baseline: {r['name']} | – | {val} | | |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--movies", type=int, default=40)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--scenes", default="40,80", help="scenes per movie LO,HI (SynthParams.scenes; "
                    "smaller = shorter movies, cheaper runs)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--tasks", default="scene,act")
    ap.add_argument("--settings", default="default,no_align_pe,no_align_pe_in_bottleneck")
    ap.add_argument("--epochs-scene", type=int)
    ap.add_argument("--epochs-act", type=int)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    results = args.out / "results.jsonl"
    if args.summary:
        print(summarise(results))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = args.out / "synth" / "manifest.jsonl"
    if not manifest.is_file():
        lo, hi = (int(v) for v in args.scenes.split(","))
        manifest = generate(args.out / "synth", args.movies, seed=args.data_seed, modalities=model_set_dims("tiny"),
                            params=SynthParams(scenes=(lo, hi), sentences=(lo // 2, hi // 2)))

    def emit(record: dict) -> None:
        with results.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)

    for task in args.tasks.split(","):
        config = f"{task}-small"
        epochs = args.epochs_scene if task == "scene" else args.epochs_act
        for setting in args.settings.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                run = args.out / f"run_{task}_{setting}_{seed}"
                t0 = time.perf_counter()
                summary = train(task, manifest, run, TrainOptions(
                    epochs=epochs, device=args.device, seed=seed, config=config, config_overrides=SETTINGS[setting],
                    progress=False))
                result = evaluate(summary["best_checkpoint"], manifest, "test", device=args.device)
                emit({"kind": "run", "task": task, "setting": setting, "seed": seed, "movies": args.movies,
                      "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
                      "test": result["metrics"], "wall_s": time.perf_counter() - t0})
        if task == "scene":
            emit({"kind": "baseline", "task": "scene", "name": "adjacent cosine",
                  "metrics": scene_baseline(manifest, list(model_set_dims("tiny")))})
        else:
            emit({"kind": "baseline", "task": "act", "name": "TRIPOD prior positions",
                  "metrics": prior_baseline(manifest)})
    print(summarise(results))


if __name__ == "__main__":
    main()
