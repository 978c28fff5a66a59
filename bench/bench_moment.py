"""Moment retrieval on planted data, and search latency on a generated catalogue (docs/moments.md).

Part 1, shown to learn (``--seeds``): for each seed s, a planted *relation-space* training set
(data seed 100 + s: train and val videos; the epoch is chosen on val) and an **independent**
planted test set (data seed 200 + s, every video a test video: new videos, new queries, new noise;
only the concept "language" (world seed 0) is shared, as a language is). On the independent set:

- ``MESM`` (model/moment.py, the packaged ``moment-small`` config, training seed s),
- ``MESM w/o FW, SS`` (the same DETR head without the two enhancements, ``--models plain``),
- ``zero-shot``: pipeline/search.py's scorer (z-scored cosine of the query's sentence vector with
  each clip, scan-statistic windows, NMS), parameter-free,
- ``prior``: the 10 most frequent (start, end) of the training windows, as fractions of the
  duration (0.05 grid), ranked by frequency,
- ``random``: 10 uniformly random windows per query (seed s).

Then the same zero-shot and random on an independent *shared-space* planted set (text vector =
image vector + noise), where a fixed similarity should work. Metrics: QVHighlights' (percent).

Part 2 (``--latency``): a generated catalogue of ``--movies`` feature folders (``--seconds`` each,
tiny clip model, 32-d; and ``--dim 512`` vectors for the index alone), time to build the index,
to open the catalogue again (index reused), and per query.

    OMP_NUM_THREADS=1 python bench/bench_moment.py --seeds 0 1 2 --models mesm,plain
    OMP_NUM_THREADS=1 python bench/bench_moment.py --latency --movies 100
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from mega_pipe.manifests.features import FeatureFolder, samples_table, shots_table
from mega_pipe.manifests.moments import (
    PlantedConfig,
    read_moment_dataset,
    write_planted,
)
from mega_pipe.model import moment as M
from mega_pipe.model.moment_metrics import qvhighlights_scores
from mega_pipe.pipeline.search import Searcher, propose_moments

KEYS = ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-full-mAP")


def zero_shot(data: M.SplitData) -> list[dict]:
    out = []
    for it in data.items:
        v = data.videos[it.query.vid]
        sims = v @ it.sentence
        z = (sims - sims.mean()) / (sims.std() or 1.0)
        t = np.arange(len(v)) * data.clip_len
        dur = it.query.duration
        rows = propose_moments(z, t, np.minimum(t + data.clip_len, dur), np.zeros(0), dur, top_k=10,
                               scales=[data.clip_len * 2 ** k for k in range(7)])
        out.append(_line(it, [[float(s), float(e), float(c)] for s, e, c in rows]))
    return out


def prior(train: M.SplitData, data: M.SplitData) -> list[dict]:
    counts: Counter = Counter()
    for it in train.items:
        for s, e in it.query.windows:
            counts[(round(s / it.query.duration * 20) / 20, round(e / it.query.duration * 20) / 20)] += 1
    top = [(s, e, c) for (s, e), c in counts.most_common() if e > s][:10]
    return [_line(it, [[s * it.query.duration, e * it.query.duration, float(c)] for s, e, c in top])
            for it in data.items]


def random_windows(data: M.SplitData, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for it in data.items:
        d = it.query.duration
        a, b = np.sort(rng.uniform(0, d, (10, 2)), axis=1).T
        out.append(_line(it, [[float(x), float(max(y, x + data.clip_len)), float(10 - i)]
                              for i, (x, y) in enumerate(zip(a, b))]))
    return out


def _line(it: M.Item, windows: list) -> dict:
    q = it.query
    return {"qid": q.qid, "query": q.query, "vid": q.vid,
            "pred_relevant_windows": [[min(s, q.duration), min(e, q.duration), c] for s, e, c in windows]}


def trained(manifest: Path, test: M.SplitData, out: Path, seed: int, epochs: int, config: str,
            overrides: dict) -> list[dict]:
    summary = M.train_moment(manifest, out, M.MomentTrainOptions(
        epochs=epochs, seed=seed, config=config, progress=False, overrides=overrides))
    model, ck = M.load_moment_model(out / "best.pt", "cpu")
    vocab = {int(k): v for k, v in ck["vocab"].items()}
    print(f"    trained {out.name}: best epoch {summary['best_epoch']} val "
          f"{summary['select_metric']} {summary['best_val'][summary['select_metric']]} "
          f"({summary['seconds']} s)", flush=True)
    return M.predict(model, test, vocab, "cpu")


def shown_to_learn(args) -> None:
    root = Path(args.work)
    results: dict[str, list[dict]] = {}
    for s in args.seeds:
        base = {"n_videos": args.videos, "n_concepts": args.concepts, "noise": args.noise}
        train_m = write_planted(root / f"train{s}", PlantedConfig(seed=100 + s, split=(0.8, 0.2, 0.0), **base))
        test_m = write_planted(root / f"test{s}", PlantedConfig(
            seed=200 + s, split=(0.0, 0.0, 1.0), **{**base, "n_videos": args.test_videos}))
        shared_m = write_planted(root / f"shared{s}", PlantedConfig(
            seed=300 + s, split=(0.0, 0.0, 1.0), space="shared", **{**base, "n_videos": args.test_videos}))
        train = M.load_split(read_moment_dataset(train_m), "train")
        test = M.load_split(read_moment_dataset(test_m), "test")
        shared = M.load_split(read_moment_dataset(shared_m), "test")
        gt, gt_shared = M.ground_truth(test), M.ground_truth(shared)
        preds = {}
        if "mesm" in args.models:
            preds["MESM"] = trained(train_m, test, root / f"run{s}", s, args.epochs, args.config, {})
        if "plain" in args.models:
            preds["MESM w/o FW, SS"] = trained(train_m, test, root / f"run{s}_plain", s, args.epochs, args.config,
                                               {"use_fw": False, "use_ss": False})
        preds.update({"zero-shot": zero_shot(test), "prior": prior(train, test),
                      "random": random_windows(test, s)})
        for name, p in preds.items():
            results.setdefault(name, []).append(qvhighlights_scores(p, gt)["brief"])
        results.setdefault("shared: zero-shot", []).append(qvhighlights_scores(zero_shot(shared), gt_shared)["brief"])
        results.setdefault("shared: random", []).append(
            qvhighlights_scores(random_windows(shared, s), gt_shared)["brief"])
        print(f"  seed {s}: " + ", ".join(f"{k} {v[-1]['MR-full-mAP']}" for k, v in results.items()), flush=True)
    print(f"\nindependent planted test sets, {len(args.seeds)} seeds {args.seeds} "
          f"({args.test_videos} test videos each), mean ± sample std (percent):")
    print("| method | " + " | ".join(k.replace("MR-full-", "") for k in KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, rows in results.items():
        cells = [f"{np.mean([r[k] for r in rows]):.1f} ± {np.std([r[k] for r in rows], ddof=1 if len(rows) > 1 else 0):.1f}"
                 for k in KEYS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    (root / "results.json").write_text(json.dumps(results, indent=1))


# -- part 2: latency -------------------------------------------------------------------------------
def _write_catalogue(root: Path, movies: int, seconds: int, dim: int, model_id: str) -> None:
    rng = np.random.default_rng(0)
    meta = {"dim": dim, "model_id": model_id, "weights_sha256": "bench", "sampling": "frame"}
    for m in range(movies):
        v = rng.standard_normal((seconds, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        f = FeatureFolder(root / f"movie{m:03d}")
        (f.path / "samples").mkdir(parents=True)
        t = np.arange(seconds, dtype=float)
        f.write_samples(samples_table(f.path.name, "clip", meta, t, t + 1, v, cache_key=f"k{m}"), "clip")
        n = seconds // 5
        shots = [SimpleNamespace(index=i, start_frame=i * 125, end_frame=(i + 1) * 125, start_s=i * 5.0,
                                 end_s=(i + 1) * 5.0) for i in range(n)]
        f.write_shots(shots_table(f.path.name, shots, {"clip": (v[: n * 5].reshape(n, 5, dim).mean(1),
                                                                 np.full(n, 5))}, {"clip": meta}))
        f.write_manifest({"movie_id": f.path.name, "contract": 1})


def latency(args) -> None:
    queries = ["a man runs along a beach", "two people talk", "a car at night", "a dog", "rain",
               "a crowd cheers", "someone opens a door", "the sea", "a city street", "a kiss"]
    for dim, model_id in ((32, "clip-tiny"), (args.dim, "clip-vit-b-32-openai")):
        root = Path(tempfile.mkdtemp(prefix="bench_search_"))
        t0 = time.perf_counter()
        _write_catalogue(root / "cat", args.movies, args.seconds, dim, model_id)
        t_write = time.perf_counter() - t0
        encoder = None
        if model_id != "clip-tiny":   # the 512-d catalogue: index and scoring only, random query vectors
            rng = np.random.default_rng(1)
            encoder = SimpleNamespace(entry=SimpleNamespace(name=model_id),
                                      encode=lambda qs, rng=rng, dim=dim: _unit(rng.standard_normal((len(qs), dim))),
                                      token_ids=lambda q: [0])
        t0 = time.perf_counter()
        s1 = Searcher([root / "cat"], encoder=encoder)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        s2 = Searcher([root / "cat"], encoder=s1.encoder)
        t_open = time.perf_counter() - t0
        times = []
        for q in queries * 2:
            r = s2.search(q)
            times.append(r.seconds)
        print(f"{args.movies} movies x {args.seconds} s, {dim}-d ({model_id}): folders written in {t_write:.1f} s; "
              f"first open + index build {t_build:.2f} s ({s1.index_state}); reopen {t_open:.2f} s "
              f"({s2.index_state}); per query (text tower + index + windows + NMS) median "
              f"{np.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {len(times)} queries")
        shutil.rmtree(root)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--videos", type=int, default=400, help="planted training set (train + val videos)")
    p.add_argument("--test-videos", type=int, default=100)
    p.add_argument("--concepts", type=int, default=16)
    p.add_argument("--noise", type=float, default=0.4)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--config", default="moment-small")
    p.add_argument("--models", default="mesm", help="comma-separated: mesm (the paper model), plain "
                   "(the same DETR head without the two enhancements: the ablation)")
    p.add_argument("--work", default="/tmp/bench_moment")
    p.add_argument("--latency", action="store_true", help="part 2 only")
    p.add_argument("--movies", type=int, default=100)
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--dim", type=int, default=512)
    args = p.parse_args()
    if args.latency:
        latency(args)
    else:
        shutil.rmtree(args.work, ignore_errors=True)
        shown_to_learn(args)


if __name__ == "__main__":
    main()
