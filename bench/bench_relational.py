"""Learn the relation, not the content: scene AP on the ``relational`` synthetic variant.

On ``manifests.synth.generate(..., variant="relational")`` every movie draws its scene content
and camera set-ups afresh, so only within-movie similarity marks a scene. This bench trains the
scene configs named in ``--arms`` (default: the paper's ``scene-small`` and the
``scene-relational`` variant) on ``--train-sizes`` training movies (``--seeds``), always
validating on the same val movies and testing on the same test movies, and prints every model
AP beside two parameter-free baselines on those test movies:

* consecutive cosine distance: 1 − cos(shot, next shot), modality-averaged, per-movie
  standardised features (``unsupervised.band_similarity``);
* windowed best match ±4: 1 − the best similarity between a shot of (i−4, i] and one of
  (i, i+4] (``unsupervised.cut_novelty``).

``--task act`` trains the act configs of ``--arms`` (default ``act-small``, the paper's, and the
``act-sync`` variant; with the shot-level gold of the training movies) on the same movies and
prints test TA/PA/D beside three baselines: TRIPOD's position prior alone, the prior plus one
linear direction per TP fitted on the same training movies (``baselines.LinearTPBaseline``, L2
weight picked on the val movies), and the same read-out of each shot's similarity-weighted
contrast to its ±k neighbours (:func:`similar_contrast`; k and L2 picked on the val movies).

The set: ``--movies`` movies of one seed; test = the first ``--test`` movies, val = the next
``--val``, train = the next max(train sizes) (a smaller train size takes a prefix).
Usage::

    python bench/bench_relational.py [--out DIR] [--train-sizes 16,50] [--seeds 0,1]
        [--epochs N] [--arms scene-small,scene-relational] [--variant relational] [--json out.json]
    python bench/bench_relational.py --task act [--train-sizes 16,53] [--seeds 0] [--epochs 60]
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
from mega_pipe.model.baselines import LinearTPBaseline
from mega_pipe.model.data import Normalizer, load_entries
from mega_pipe.model.evaluate import evaluate
from mega_pipe.model.metrics import act_metrics, scene_metrics
from mega_pipe.model.prior import tp_prior_by_index
from mega_pipe.model.train import TrainOptions, train

DEFAULT_ARMS = {"scene": "scene-small,scene-relational", "act": "act-small,act-sync"}
CONTRAST_KS = (4, 8, 16)


def similar_contrast(x: torch.Tensor, k: int, tau: float = 0.1) -> torch.Tensor:
    """Per shot (x: (L, C), one movie): the shot minus the similarity-weighted mean of the shots
    within ±k of it (itself left out), weights softmax(cos / tau) of the centred features — what
    sets a shot apart from the look-alike shots of its own scene (a linear baseline's input)."""
    unit = torch.nn.functional.normalize(x - x.mean(dim=0), dim=-1)
    sims = unit @ unit.T / tau
    idx = torch.arange(len(x))
    near = ((idx[:, None] - idx[None, :]).abs() <= k) & (idx[:, None] != idx[None, :])
    a = torch.softmax(sims.masked_fill(~near, -torch.inf), dim=1).nan_to_num(0.0)
    return x - a @ x


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


def act_baselines(train_entries, val_entries, test_entries) -> dict:
    """TA/PA/D on ``test_entries`` of the TRIPOD prior, of the prior + linear TP directions
    fitted on ``train_entries`` (features standardised on them, as the trainer does; L2 weight
    picked on ``val_entries``), and of the same read-out of the similarity-weighted contrast
    (:func:`similar_contrast`, k of ``CONTRAST_KS`` and L2 picked on ``val_entries``)."""
    modalities = list(model_set_dims("tiny"))
    train_movies = load_entries(train_entries, modalities)
    norm = Normalizer.fit(train_movies, modalities)
    val_movies, test_movies = load_entries(val_entries, modalities), load_entries(test_entries, modalities)
    for movie in (*train_movies, *val_movies, *test_movies):
        norm.apply(movie)

    def rows(movies, k):
        out = []
        for movie in movies:
            x = np.concatenate([movie.features[m] for m in modalities], axis=1)
            out.append(([x] if k is None else [similar_contrast(torch.from_numpy(x).double(), k).numpy()], movie.tp_shots))
        return out

    def val_ta(model, k):
        return act_metrics([{"movie_id": str(i), "posteriors": model.posteriors(f).tolist(), "gold": g}
                            for i, (f, g) in enumerate(rows(val_movies, k))])["ta"]

    linear = LinearTPBaseline.select(rows(train_movies, None), rows(val_movies, None))
    contrast = [(LinearTPBaseline.select(rows(train_movies, k), rows(val_movies, k)), k) for k in CONTRAST_KS]
    best_contrast = max(contrast, key=lambda mk: val_ta(*mk))
    fitted = {"prior + linear TP directions": (linear, None),
              f"prior + linear TP directions on the similarity-weighted contrast (k={best_contrast[1]} on val)": best_contrast}
    recs: dict[str, list] = {"TRIPOD prior": [], **{name: [] for name in fitted}}
    for movie in test_movies:
        gold = movie.tp_shots
        recs["TRIPOD prior"].append({"movie_id": movie.movie_id, "posteriors": tp_prior_by_index(movie.n_shots).tolist(),
                                     "gold": gold})
        for name, (model, k) in fitted.items():
            (f, _), = rows([movie], k)
            recs[name].append({"movie_id": movie.movie_id, "posteriors": model.posteriors(f).tolist(), "gold": gold})
    return {k: act_metrics(v) for k, v in recs.items()}


def make_set(work: Path, args) -> tuple[Path, list]:
    n = args.test + args.val + max(args.train_sizes)
    manifest = work / "synth" / "manifest.jsonl"
    if not manifest.exists() or len(read_manifest(manifest)) < n:   # reuse a set (movie i is the same)
        generate(work / "synth", n, seed=args.data_seed, modalities=model_set_dims("tiny"), variant=args.variant,
                 overwrite=True)   # grows a smaller set of the same seed
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
    ap.add_argument("--task", choices=("scene", "act"), default="scene")
    ap.add_argument("--arms", help="config names or JSON files (default: scene-small,scene-relational / "
                    "act-small,act-sync)")
    ap.add_argument("--epochs", type=int, help="default: each config's own train.epochs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.train_sizes = [int(x) for x in args.train_sizes.split(",")]
    args.arms = args.arms or DEFAULT_ARMS[args.task]
    torch.set_num_threads(args.threads)
    work = args.out or Path(tempfile.mkdtemp(prefix="mega-relational-"))
    manifest, entries = make_set(work, args)
    test = [e for e in entries if e.split == "test"]
    train_entries = [e for e in entries if e.split == "train"]
    keys = ("ap", "f1") if args.task == "scene" else ("ta", "pa", "d")
    report = {"variant": args.variant, "task": args.task, "test_movies": len(test), "epochs": args.epochs or "each config's",
              "baselines": {}, "runs": []}
    if args.task == "scene":   # parameter-free: the same for every training size
        report["baselines"] = {k: {m: v[m] for m in keys} for k, v in baselines(test).items()}
        print(json.dumps(report["baselines"]), flush=True)
    for size in args.train_sizes:
        if args.task == "act":   # fitted on the training movies of this size
            fitted = act_baselines(train_entries[:size], [e for e in entries if e.split == "val"], test)
            report["baselines"][size] = {k: {m: v[m] for m in keys} for k, v in fitted.items()}
            print(json.dumps({size: report["baselines"][size]}), flush=True)
        subset = [e for e in entries if e.split != "train"] + train_entries[:size]
        path = work / f"manifest_train{size}.jsonl"
        write_manifest(path, subset)
        for arm in args.arms.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                out = work / f"run_{Path(arm).stem}_n{size}_s{seed}"
                t0 = time.perf_counter()
                summary = train(args.task, path, out, TrainOptions(
                    epochs=args.epochs, seed=seed, config=arm, progress=False, device="cpu"))
                result = evaluate(summary["best_checkpoint"], path, "test", device="cpu")["metrics"]
                row = {"arm": arm, "train_movies": size, "seed": seed, **{m: result[m] for m in keys},
                       "best_epoch": summary["best_epoch"], "wall_s": round(time.perf_counter() - t0, 1)}
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    main_key = keys[0]
    print(f"baselines on the {len(test)} test movies: {json.dumps(report['baselines'])}")
    for size in args.train_sizes:
        for arm in args.arms.split(","):
            vals = [r[main_key] for r in report["runs"] if r["arm"] == arm and r["train_movies"] == size]
            if vals:
                print(f"{arm:16s} {size:3d} train movies: {main_key.upper()} {np.mean(vals):.3f} ± "
                      f"{np.std(vals, ddof=1 if len(vals) > 1 else 0):.3f} ({', '.join(f'{a:.3f}' for a in vals)})")


if __name__ == "__main__":
    main()
