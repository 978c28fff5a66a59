"""Synopsis turning points on TRIPOD: repeated 5-fold cross-validation of ``train --task
synopsis`` against the theory prior and the position-distribution (KDE) baseline
(docs/training.md, "Synopsis task").

1. ``manifest tripod --synopses-only`` on TRIPOD's training CSV (84 movies; annotators merged):
   one synopsis-only feature folder per movie, sentences embedded with the paper set's
   ``subtitle`` encoder (all-MiniLM-L6-v2), cached in ``--work`` across runs.
2. Folds **by movie**, ``--repeats`` times: repeat r cuts a permutation of the movies (seed
   ``--seed`` + r) into ``--folds`` parts and trains with that seed. For each fold the others
   train; ``--val-fraction`` of the training movies (seeded by (seed, fold)) is held out to pick
   the best epoch (lowest validation loss); the fold is the test split. Everything the model
   chooses (its starting prior, its epoch) is chosen on the fold's training movies.
3. Per fold, TRIPOD's sentence-level TA/PA/D (``metrics.synopsis_metrics``) of the trained model
   (``evaluate`` on the test split; also its argmax), of the theory prior
   (``baselines.TheoryBaseline``, nothing fitted), of the KDE baseline
   (``baselines.PositionBaseline``) fitted on all the fold's training movies, each also decoded
   with the model's rule, and of the prior the model starts from (``choose_position_prior`` on
   the training split, no content); also GraphTP's ±1-window metrics, for reference. Prints
   per-fold numbers and mean ± std over all folds × repeats (std with ddof = 1), in %, and
   writes them to WORK/runs/NAME/results.json.

Usage::

    OMP_NUM_THREADS=1 python bench/bench_synopsis.py [--work DIR] [--config synopsis] [--epochs N]
        [--seed 0] [--repeats 3] [--folds 5] [--override '{"dropout": 0.5}'] [--baselines-only]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mega_pipe.manifests.features import FeatureFolder
from mega_pipe.manifests.schema import MovieEntry, write_manifest
from mega_pipe.manifests.tripod import convert_tripod
from mega_pipe.model.baselines import PositionBaseline, TheoryBaseline, choose_position_prior
from mega_pipe.model.checkpoint import load_checkpoint
from mega_pipe.model.metrics import act_metrics, read_records, synopsis_metrics, synopsis_prediction
from mega_pipe.model.evaluate import evaluate
from mega_pipe.model.train import TrainOptions, train
from mega_pipe.pipeline.synopsis import SynopsisFolderWriter

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "tripod" / "TRIPOD_synopses_train.csv"
METRICS = ("ta", "pa", "d")


def prepare(csv: Path, work: Path) -> list[MovieEntry]:
    """Synopsis-only feature folders for every movie of the CSV (cached) and their entries."""
    writer = SynopsisFolderWriter("paper", offline=True)
    report = convert_tripod({"train": csv}, work / "features", work / "all.jsonl", work / "synopses",
                            synopsis_folder=writer)
    print(f"{len(report.entries)} movies; {len(writer.written)} embedded now", file=sys.stderr)
    return report.entries


def folds_of(n: int, k: int, seed: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), k)


def baseline_metrics(train_entries: list[MovieEntry], test_entries: list[MovieEntry],
                     distance_weight: float) -> dict[str, dict]:
    """The baselines' metrics on the test entries: the position-distribution (KDE) baseline
    fitted on the training entries and the parameter-free theory prior, each by its argmax, by
    GraphTP's ±1 window, and decoded with the model's minimum-Bayes-risk rule
    (``distance_weight``) for a like-for-like comparison."""
    size = {e.movie_id: FeatureFolder(e.features).n_sentences() for e in [*train_entries, *test_entries]}
    test = [(e.movie_id, size[e.movie_id], e.tp_sentences) for e in test_entries]
    out = {}
    for name, prior in (("baseline", PositionBaseline.fit([(size[e.movie_id], e.tp_sentences) for e in train_entries])),
                        ("theory", TheoryBaseline())):
        records = prior.records(test)
        decoded = [{**r, "prediction": [synopsis_prediction(p, distance_weight) for p in r["posteriors"]]}
                   for r in records]
        out[name] = synopsis_metrics(records)
        out[f"{name}_window"] = act_metrics(records)
        out[f"{name}_decoded"] = synopsis_metrics(decoded)
    # the prior the model's position head starts from, chosen on the training split alone as
    # SynopsisTask.prepare does (the validation movies are not among the training synopses)
    prior, out["start_prior_name"] = choose_position_prior(
        [(size[e.movie_id], e.tp_sentences) for e in train_entries if e.split == "train"])
    out["start_prior"] = synopsis_metrics(prior.records(test))
    return out


def fold_entries_of(entries: list[MovieEntry], test_idx: np.ndarray, fold_seed: int, fold: int,
                    val_fraction: float) -> list[MovieEntry]:
    """The entries with this fold's splits: test = the fold, val = ``val_fraction`` of the rest
    (seeded), train = the others."""
    rng = np.random.default_rng([fold_seed, fold])
    rest = np.array([i for i in range(len(entries)) if i not in set(test_idx)])
    n_val = int(round(val_fraction * len(rest)))
    val_idx = set(rng.permutation(rest)[:n_val].tolist())
    split = {i: "test" for i in test_idx}
    split.update({i: ("val" if i in val_idx else "train") for i in rest})
    return [MovieEntry(e.movie_id, e.features, split[i], tp_sentences=e.tp_sentences)
            for i, e in enumerate(entries)]


def run_fold(repeat: int, fold: int, entries: list[MovieEntry], test_idx: np.ndarray,
             args: argparse.Namespace) -> dict:
    """Fold ``fold`` of repeat ``repeat`` (fold permutation and training seed: ``args.seed`` +
    ``repeat``)."""
    seed = args.seed + repeat
    fold_entries = fold_entries_of(entries, test_idx, seed, fold, args.val_fraction)
    train_entries = [e for e in fold_entries if e.split != "test"]
    test_entries = [e for e in fold_entries if e.split == "test"]
    result = {"repeat": repeat, "fold": fold, "seed": seed, "n_test": len(test_idx)}
    if args.baselines_only:
        return {**result, **baseline_metrics(train_entries, test_entries, args.distance_weight)}
    out = args.work / "runs" / args.name / f"r{repeat}fold{fold}"
    manifest = out / "manifest.jsonl"
    write_manifest(manifest, fold_entries)
    t0 = time.perf_counter()
    summary = train("synopsis", manifest, out / "run", TrainOptions(
        config=args.config, epochs=args.epochs, seed=seed,
        config_overrides=json.loads(args.override) if args.override else None, device=args.device, progress=False))
    evaluation = evaluate(summary["best_checkpoint"], manifest, "test", out / "eval", device=args.device)
    records = read_records(evaluation["predictions"])
    weight = load_checkpoint(summary["best_checkpoint"]).cfg.decode_distance_weight
    argmax = synopsis_metrics([{k: v for k, v in r.items() if k != "prediction"} for r in records])
    return {**result, "best_epoch": summary["best_epoch"], "seconds": time.perf_counter() - t0,
            "model": evaluation["metrics"], "model_argmax": argmax, "model_window": act_metrics(records),
            **baseline_metrics(train_entries, test_entries, weight)}


ROWS = (("MEGA synopsis model (config's decoding)", "model"), ("MEGA synopsis model, argmax", "model_argmax"),
        ("Theory prior (argmax = sentence containing the published mean position)", "theory"),
        ("Theory prior, the model's decoding", "theory_decoded"),
        ("Position-distribution (KDE) baseline (argmax = its mode)", "baseline"),
        ("KDE baseline, the model's decoding", "baseline_decoded"),
        ("The model's starting prior alone (chosen in-fold, no content)", "start_prior"),
        ("MEGA synopsis model, ±1 window (GraphTP)", "model_window"),
        ("Theory prior, ±1 window (GraphTP)", "theory_window"),
        ("KDE baseline, ±1 window (GraphTP)", "baseline_window"))


def table(results: list[dict]) -> str:
    """Mean ± std (ddof 1) over all outer folds × repeats, in %."""
    lines = ["| | TA ↑ | PA ↑ | D ↓ |", "|---|---|---|---|"]
    for label, key in ROWS:
        if key not in results[0]:
            continue
        cells = []
        for m in METRICS:
            values = 100 * np.array([r[key][m] for r in results])
            cells.append(f"{values.mean():.2f} ± {values.std(ddof=1):.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--work", type=Path, default=Path("bench-synopsis"))
    ap.add_argument("--name", default="default", help="sub-folder of WORK/runs for this configuration")
    ap.add_argument("--config", default="synopsis")
    ap.add_argument("--override", help="JSON object of top-level config overrides")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3,
                    help="repeated CV: repeat r permutes the movies and seeds the training with --seed + r")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--baselines-only", action="store_true", help="no training: the baselines alone")
    ap.add_argument("--distance-weight", type=float, default=0.0,
                    help="with --baselines-only: λ of the baselines' 'model's decoding' rows")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    entries = prepare(args.csv, args.work)
    results = []
    fmt = lambda d: " ".join(f"{m} {100 * d[m]:.2f}" for m in METRICS)  # noqa: E731
    for repeat in range(args.repeats):
        for fold, test_idx in enumerate(folds_of(len(entries), args.folds, args.seed + repeat)):
            r = run_fold(repeat, fold, entries, test_idx, args)
            results.append(r)
            head = f"repeat {repeat} fold {fold}: {r['n_test']} test movies"
            if "model" in r:
                head += f", best epoch {r['best_epoch']}, {r['seconds']:.0f} s | model {fmt(r['model'])}"
            print(f"{head} | theory {fmt(r['theory'])} | KDE {fmt(r['baseline'])}", flush=True)
    print(f"\n{args.repeats} × {args.folds}-fold CV on {len(entries)} TRIPOD training movies (seeds "
          f"{args.seed}..{args.seed + args.repeats - 1}, config {args.config}"
          f"{' + ' + args.override if args.override else ''}), mean ± std over the {len(results)} outer folds, %:\n")
    print(table(results))
    out = args.work / "runs" / args.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
