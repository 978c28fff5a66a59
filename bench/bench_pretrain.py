"""Label efficiency of long-range multimodal pretraining (docs/pretraining.md, issue 22).

Question: our catalogue has no labels — can pretraining on it (``mega-pipe pretrain``) still
help MEGA when only a few movies are labelled? On one planted set (``manifests.synth``,
``--data-seed``, ``--variant``) the movies are split once into

* an **unlabelled pool** (``--pool`` movies; labels never read; 80 % pretrain, 20 % pick best.pt),
* a **labelled pool** (``--labelled`` movies) of which 5 / 10 / 25 / 100 % (at least one movie,
  the first k of a per-seed shuffle) are the training labels,
* ``--val`` validation movies (best epoch) and ``--test`` held-out test movies (read once, at the end).

For every seed and fraction, scene (AP) and act (TA) MEGA are trained from scratch and from the
pretrained encoders (``train --init``; ``--freeze`` adds frozen-encoder rows), same config, same
steps, same seed; the parameter-free baselines (shot coherence and adjacent-shot distance for
scenes, TRIPOD's position prior for turning points) are scored on the same test movies. Each
training run gets about ``--steps`` optimiser steps (epochs = ceil(steps / steps per epoch),
capped at ``--max-epochs``), so a 1-movie run is not starved of updates.

Sizes (CPU, 1 thread): the configs are scene-small / act-small with the widths of
``SCENE_CFG`` / ``ACT_CFG`` below (written to the work folder as JSON), three modalities.

Usage (the table in docs/pretraining.md)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/bench_pretrain.py --seeds 0,1,2 \
        --data-seed 0 --out /tmp/bench-pretrain --plot docs/pretraining_label_efficiency.png
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from mega_pipe.manifests.features import FeatureFolder, vectors_of
from mega_pipe.manifests.schema import read_manifest, write_manifest
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.model import prior as P
from mega_pipe.model import unsupervised as U
from mega_pipe.model.baselines import LinearTPBaseline
from mega_pipe.model.data import Normalizer, read_movie
from mega_pipe.model.evaluate import evaluate
from mega_pipe.model.metrics import act_metrics, scene_metrics
from mega_pipe.model.pretrain import PretrainSettings
from mega_pipe.model.pretrain_train import PretrainOptions, pretrain
from mega_pipe.model.train import TrainOptions, train
from mega_pipe.pipeline.embed import boundary_probe, embed_folders

FRACTIONS = (0.05, 0.10, 0.25, 1.0)
MODALITIES = {"clip": 32, "place": 48, "audio": 24}
SCENE_CFG = {"task": "scene", "max_len": 17, "n_bottleneck": 2, "width": 32, "ffn_width": 64,
             "n_unimodal": 1, "n_fusion": 1, "n_heads": 4, "dropout": 0.1, "positional": "learned",
             "train": {"lr": 3e-3, "batch_size": 64, "epochs": 12, "warmup_epochs": 0.5}}
ACT_CFG = {"task": "act", "max_len": 3000, "n_bottleneck": 50, "width": 32, "ffn_width": 64,
           "n_unimodal": 1, "n_fusion": 1, "n_heads": 4, "dropout": 0.5, "positional": "sinusoidal",
           "synopsis": {"max_len": 60, "n_bottleneck": 20, "dropout": 0.1, "n_layers": 1},
           "train": {"lr": 1e-3, "batch_size": 2, "epochs": 60, "warmup_epochs": 1}}


def make_sets(root: Path, data_seed: int, variant: str, pool: int, labelled: int, val: int, test: int) -> dict:
    """The planted set and its four manifests: pretrain (pool, no labels), val, test, and the
    labelled pool (all labels; fractions are cut from it per seed)."""
    n = pool + labelled + val + test
    manifest = root / "synth" / "manifest.jsonl"
    if not manifest.exists():
        generate(root / "synth", n, seed=data_seed, modalities=MODALITIES,
                 params=SynthParams(variant=variant))
    entries = read_manifest(manifest)
    order = np.random.default_rng([data_seed, 0xB0]).permutation(len(entries))
    roles = {"pool": order[:pool], "labelled": order[pool:pool + labelled],
             "val": order[pool + labelled:pool + labelled + val], "test": order[pool + labelled + val:]}
    cut = max(1, round(0.8 * pool))
    pre = []
    for k, i in enumerate(roles["pool"]):
        e = entries[i]
        pre.append(type(e)(movie_id=e.movie_id, features=e.features, split="train" if k < cut else "val"))
    write_manifest(root / "pretrain.jsonl", pre)
    return {"entries": entries, "roles": roles}


def label_manifest(root: Path, sets: dict, fraction: float, seed: int) -> Path:
    """Training labels: the first ceil(fraction · n) (>= 1) labelled movies of a per-seed shuffle; val, test."""
    entries, roles = sets["entries"], sets["roles"]
    shuffled = np.random.default_rng([seed, 0x1AB]).permutation(roles["labelled"])
    k = max(1, math.ceil(fraction * len(shuffled) - 1e-9))
    rows = []
    for i in shuffled[:k]:
        rows.append(_with_split(entries[i], "train"))
    rows += [_with_split(entries[i], "val") for i in roles["val"]]
    rows += [_with_split(entries[i], "test") for i in roles["test"]]
    path = root / f"labels_{fraction:g}_seed{seed}.jsonl"
    write_manifest(path, rows)
    return path


def _with_split(e, split: str):
    return type(e)(**{**e.__dict__, "split": split})


def baselines(sets: dict) -> dict:
    """Parameter-free baselines on the test movies."""
    scene: dict[str, list] = {"shot coherence (w = 4)": [], "adjacent-shot cosine distance": []}
    act: list = []
    for i in sets["roles"]["test"]:
        e = sets["entries"][i]
        times = FeatureFolder(e.features).read_shot_times()
        frames = np.stack([times["start_frame"], times["end_frame"]], 1).tolist()
        feats = U.folder_features(e.features)
        band = U.band_similarity(feats, 1)[:, 0]
        for name, prob in (("shot coherence (w = 4)", U.coherence_scenes(feats)["prob"]),
                           ("adjacent-shot cosine distance", np.r_[np.clip((1 - band[:-1]) / 2, 0, 1), 1.0])):
            scene[name].append({"movie_id": e.movie_id, "prob": np.asarray(prob).tolist(),
                                "label": e.scene_labels, "shot_frames": frames})
        act.append({"movie_id": e.movie_id, "posteriors": P.tp_prior_by_index(len(frames)).tolist(),
                    "gold": e.tp_shots})
    out = {f"scene AP: {k}": scene_metrics(v)["ap"] for k, v in scene.items()}
    out["act TA: TRIPOD position prior"] = act_metrics(act)["ta"]
    return out


def linear_baselines(manifest: Path, pre_scene: Path | None, tasks: list[str]) -> dict:
    """The linear baselines trained on the same labels (``manifest``'s train movies; L2 chosen
    on its val movies), scored on its test movies: scene, a logistic regression on the raw
    features' pair inputs (``embed.boundary_probe``) and on the pretrained fused embeddings
    (``pre_scene``'s, written by ``embed``); act, one linear direction per TP plus TRIPOD's prior
    (``baselines.LinearTPBaseline``)."""
    entries = read_manifest(manifest)
    by_split = {s: [e for e in entries if e.split == s] for s in ("train", "val", "test")}
    out = {}
    if "scene" in tasks:
        out["scene linear probe, raw features"] = boundary_probe("raw", by_split)["ap"]
        if pre_scene is not None:
            embed_folders(pre_scene, [e.features for e in entries], progress=False)
            out["scene linear probe, pretrained fused embeddings"] = boundary_probe("fused", by_split)["ap"]
    if "act" in tasks:
        mods = list(MODALITIES)
        movies = {s: [read_movie(e.features, mods) for e in es] for s, es in by_split.items()}
        norm = Normalizer.fit(movies["train"], mods)
        data = {s: [([norm.apply(mv).features[m] for m in mods], e.tp_shots) for mv, e in zip(movies[s], by_split[s])]
                for s in movies}
        fitted = LinearTPBaseline.select(data["train"], data["val"])
        out["act linear TP directions + prior"] = act_metrics([
            {"movie_id": e.movie_id, "posteriors": fitted.posteriors(f).tolist(), "gold": g}
            for (f, g), e in zip(data["test"], by_split["test"])])["ta"]
    return out


WHY_ARMS = {"full recipe": {}, "no inter-modal alignment": {"inter": 0.0},
            "masked-shot only (no alignment, no cross-modal)": {"inter": 0.0, "cross": 0.0}}


def adjacent_cosine_ap(entries, column: str | None) -> float:
    """Test AP of 1 − cos(x_i, x_{i+1}) as the boundary score of shot i, on the raw features
    (``column`` None: each modality standardised per movie, similarities averaged, as the
    parameter-free baseline) or on one embeddings.parquet column."""
    records = []
    for e in entries:
        folder = FeatureFolder(e.features)
        if column is None:
            sim = U.band_similarity(U.folder_features(e.features), 1)[:, 0]
        else:
            x = vectors_of(folder.read_embeddings([column])[column]).astype(np.float64)
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            sim = np.r_[(x[:-1] * x[1:]).sum(axis=1), 0.0]
        times = folder.read_shot_times()
        records.append({"movie_id": e.movie_id, "prob": np.r_[np.clip((1 - sim[:-1]) / 2, 0, 1), 1.0].tolist(),
                        "label": e.scene_labels,
                        "shot_frames": np.stack([times["start_frame"], times["end_frame"]], 1).tolist()})
    return scene_metrics(records)["ap"]


def why(root: Path, sets: dict, seeds: list[int], cfg: Path, epochs: int) -> dict:
    """Why pretraining does (not) help the scene task: for pretrainings with parts of the
    recipe switched off (same data, seeds, config), the scene-boundary information left in the
    fused embedding — parameter-free adjacent-shot cosine AP and the linear probe's AP with all
    training labels — beside the same on the raw features (test movies)."""
    manifest = label_manifest(root, sets, 1.0, seeds[0])
    entries = read_manifest(manifest)
    by_split = {s: [e for e in entries if e.split == s] for s in ("train", "val", "test")}
    out: dict = {"raw features": {"adjacent cosine AP": [adjacent_cosine_ap(by_split["test"], None)],
                                  "linear probe AP": [boundary_probe("raw", by_split)["ap"]]}}
    for seed in seeds:
        for name, change in WHY_ARMS.items():
            pre_dir = root / (f"pre_scene_seed{seed}" if not change else
                              f"why_{'_'.join(f'{k}{v:g}' for k, v in change.items())}_seed{seed}")
            if not (pre_dir / "best.pt").exists():
                pretrain(root / "pretrain.jsonl", pre_dir, PretrainOptions(
                    config=str(cfg), settings=PretrainSettings(seq_len=256, **change), epochs=epochs,
                    batch_size=4, seed=seed, device="cpu", progress=False))
            embed_folders(pre_dir / "best.pt", [e.features for e in entries], progress=False)
            row = out.setdefault(f"pretrained, {name}: fused", {})
            row.setdefault("adjacent cosine AP", []).append(adjacent_cosine_ap(by_split["test"], "fused"))
            row.setdefault("linear probe AP", []).append(boundary_probe("fused", by_split)["ap"])
            print(f"why {name} seed {seed}: {row['adjacent cosine AP'][-1]:.3f} {row['linear probe AP'][-1]:.3f}",
                  file=sys.stderr)
    return out


def _epochs(task: str, manifest: Path, steps: int, max_epochs: int) -> int:
    entries = [e for e in read_manifest(manifest) if e.split == "train"]
    if task == "scene":
        per_epoch = math.ceil(sum(len(e.scene_labels) - 1 for e in entries) / SCENE_CFG["train"]["batch_size"])
    else:
        per_epoch = math.ceil(len(entries) / ACT_CFG["train"]["batch_size"])
    return int(min(max_epochs, max(1, math.ceil(steps / per_epoch))))


def run_one(task: str, cfg: Path, manifest: Path, out: Path, seed: int, init: Path | None, freeze: bool,
            steps: int, max_epochs: int) -> float:
    if not (out / "best.pt").exists():
        train(task, manifest, out, TrainOptions(config=str(cfg), epochs=_epochs(task, manifest, steps, max_epochs),
                                                seed=seed, device="cpu", progress=False, init=init,
                                                freeze_init=freeze))
    result = evaluate(out / "best.pt", manifest, "test", out, device="cpu")
    return float(result["metrics"]["ap" if task == "scene" else "ta"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--variant", default="default", choices=("default", "relational", "context"))
    ap.add_argument("--pool", type=int, default=16, help="unlabelled movies for pretraining")
    ap.add_argument("--labelled", type=int, default=20)
    ap.add_argument("--val", type=int, default=4)
    ap.add_argument("--test", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150, help="scene: optimiser steps per training run (about)")
    ap.add_argument("--act-steps", type=int, default=40, help="act: optimiser steps per training run (about)")
    ap.add_argument("--max-epochs", type=int, default=12)
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    ap.add_argument("--tasks", default="scene,act")
    ap.add_argument("--freeze", action="store_true", help="also frozen-encoder rows")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, help="write the label-efficiency plot (PNG) here")
    ap.add_argument("--why", action="store_true",
                    help="instead: the scene-boundary information in the embeddings of pretrainings with "
                         "parts of the recipe switched off (docs/pretraining.md, 'Why')")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    root = args.out
    root.mkdir(parents=True, exist_ok=True)
    cfgs = {"scene": root / "scene-bench.json", "act": root / "act-bench.json"}
    cfgs["scene"].write_text(json.dumps(SCENE_CFG))
    cfgs["act"].write_text(json.dumps(ACT_CFG))
    sets = make_sets(root, args.data_seed, args.variant, args.pool, args.labelled, args.val, args.test)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.why:
        result = why(root, sets, seeds, cfgs["scene"], args.pretrain_epochs)
        (root / "why.json").write_text(json.dumps(result, indent=2))
        print("| embedding | adjacent-shot cosine, test AP | linear probe (100 % labels), test AP |\n|---|---|---|")
        for name, row in result.items():
            print(f"| {name} | " + " | ".join(f"{np.mean(v):.3f} ± {np.std(v, ddof=1 if len(v) > 1 else 0):.3f}" for v in row.values()) + " |")
        return
    fractions = [float(f) for f in args.fractions.split(",")]
    tasks = args.tasks.split(",")
    base = baselines(sets)
    results: dict = {}
    arms = ["scratch", "pretrained"] + (["pretrained, frozen"] if args.freeze else [])
    for seed in seeds:
        pre = {}
        for task in tasks:
            pre_dir = root / f"pre_{task}_seed{seed}"
            if not (pre_dir / "best.pt").exists():
                t0 = time.perf_counter()
                pretrain(root / "pretrain.jsonl", pre_dir, PretrainOptions(
                    config=str(cfgs[task]), settings=PretrainSettings(seq_len=256), epochs=args.pretrain_epochs,
                    batch_size=4, seed=seed, device="cpu", progress=False))
                print(f"pretrain {task} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            pre[task] = pre_dir / "best.pt"
        for fraction in fractions:
            manifest = label_manifest(root, sets, fraction, seed)
            for name, value in linear_baselines(manifest, pre.get("scene"), tasks).items():
                task = name.split()[0]
                results.setdefault(task, {}).setdefault(name.split(" ", 1)[1], {}).setdefault(fraction, []).append(value)
                print(f"{name} {fraction:g} seed {seed}: {value:.3f}", file=sys.stderr)
            for task in tasks:
                for arm in arms:
                    init = None if arm == "scratch" else pre[task]
                    out = root / f"{task}_{arm.replace(', ', '-')}_{fraction:g}_seed{seed}"
                    t0 = time.perf_counter()
                    value = run_one(task, cfgs[task], manifest, out, seed, init, arm.endswith("frozen"),
                                    args.steps if task == "scene" else args.act_steps, args.max_epochs)
                    results.setdefault(task, {}).setdefault(arm, {}).setdefault(fraction, []).append(value)
                    print(f"{task} {arm} {fraction:g} seed {seed}: {value:.3f} ({time.perf_counter() - t0:.0f} s)",
                          file=sys.stderr)
    n_lab = len(sets["roles"]["labelled"])
    report = {"data_seed": args.data_seed, "variant": args.variant, "seeds": seeds, "fractions": fractions,
              "labelled_movies": {f"{f:g}": max(1, math.ceil(f * n_lab - 1e-9)) for f in fractions},
              "pool": args.pool, "val": args.val, "test": args.test, "baselines": base,
              "results": {t: {a: {f"{f:g}": v for f, v in r.items()} for a, r in d.items()} for t, d in results.items()},
              "seconds": time.perf_counter() - t_start}
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    if args.plot:
        plot(report, args.plot)


MEGA_ARMS = ("scratch", "pretrained", "pretrained, frozen")


def _label(arm: str) -> str:
    return f"MEGA, {arm}" if arm in MEGA_ARMS else arm


def print_table(report: dict) -> None:
    fr = report["fractions"]
    print(f"data seed {report['data_seed']} ({report['variant']}), seeds {report['seeds']}, "
          f"{report['test']} test movies, pool {report['pool']} unlabelled movies; "
          f"{report['seconds']:.0f} s\n")
    head = " | ".join(f"{f:.0%} ({report['labelled_movies'][f'{f:g}']} movies)" for f in fr)
    print(f"| task, metric | model | {head} |\n|---|---|" + "---|" * len(fr))
    for task, arms in report["results"].items():
        metric = "AP" if task == "scene" else "TA"
        for arm, values in arms.items():
            cells = " | ".join(f"{np.mean(values[f'{f:g}']):.3f} ± {np.std(values[f'{f:g}'], ddof=1):.3f}" for f in fr)
            print(f"| {task} {metric} | {_label(arm)} | {cells} |")
    for name, value in report["baselines"].items():
        print(f"| {name} | parameter-free | " + " | ".join(f"{value:.3f}" for _ in fr) + " |")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr = report["fractions"]
    tasks = list(report["results"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for arm, values in report["results"][task].items():
            mean = [np.mean(values[f"{f:g}"]) for f in fr]
            std = [np.std(values[f"{f:g}"], ddof=1) for f in fr]
            ax.errorbar([100 * f for f in fr], mean, yerr=std, marker="o", capsize=3, label=_label(arm),
                        linestyle="-" if arm in MEGA_ARMS else ":")
        for name, value in report["baselines"].items():
            if name.startswith(task):
                ax.axhline(value, linestyle="--", linewidth=1, color="grey")
                ax.text(100 * fr[0], value, name.split(": ", 1)[1], fontsize=7, va="bottom")
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in fr], [f"{100 * f:g}%" for f in fr])
        ax.set_xlabel("training labels (% of labelled movies)")
        ax.set_ylabel("test AP" if task == "scene" else "test TA")
        ax.set_title(f"{task} ({report['variant']} planted set, data seed {report['data_seed']})", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
