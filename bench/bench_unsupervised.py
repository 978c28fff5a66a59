"""Checkpoint-free boundaries on the planted synthetic benchmark (docs/unsupervised.md).

For every test-split movie of ``--seeds`` synthetic sets (``manifests.synth.generate``), scores
with the paper's metrics (``model/metrics.py``):

* scenes — ``shot-coherence`` (the default of ``segment`` without ``--scene-checkpoint``), with
  the automatic count and with the true count; OSG (Rotman et al.) at the true count and with its
  SVD-elbow count; adjacent-shot cosine distance; the uniform baseline (true count, equal shot
  runs). AP ranks the per-shot score (hard 0/1 methods rank only their boundaries);
* turning points — the TRIPOD prior decoded with ``ordered_turning_points`` (by time / by shot
  index, with and without snapping to the predicted scenes), and the trivial baseline "each TP at
  its prior mean position".

Usage::

    python bench/bench_unsupervised.py [--seeds 0,1,2] [--movies 200] [--split test] [--out DIR]
        [--windows 2,3,4,6,8]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from mega_pipe.extractors.registry import model_set_dims
from mega_pipe.manifests.boundaries import ordered_turning_points
from mega_pipe.manifests.features import FeatureFolder
from mega_pipe.manifests.schema import read_manifest
from mega_pipe.manifests.synth import generate
from mega_pipe.model import prior as P
from mega_pipe.model import unsupervised as U
from mega_pipe.model.metrics import act_metrics, scene_metrics


def osg_scenes(distance: np.ndarray, n_scenes: int) -> list[int]:
    """Optimal Sequential Grouping (Rotman, Porat & Ashour, ISM 2016 / 2017), additive cost:
    the K contiguous blocks minimising Σ_blocks Σ_{i,j ∈ block} D(i, j), exact DP in
    O(K · N²). Returns the last shot of every block."""
    d = np.asarray(distance, np.float64)
    n = len(d)
    k_max = max(1, min(int(n_scenes), n))
    p = np.zeros((n + 1, n + 1))
    p[1:, 1:] = d.cumsum(0).cumsum(1)
    diag = np.diag(p)
    block = diag[None, :] - p - p.T + diag[:, None]          # block[a, b] = Σ D[a:b, a:b]
    invalid = np.arange(n)[:, None] >= np.arange(n + 1)[None, :]
    cost = block[:, n].copy()                                 # one block [a, n)
    cost[n] = np.inf
    backs = []
    for _ in range(2, k_max + 1):
        m = block[:n, :] + cost[None, :]
        m[invalid] = np.inf
        b = m.argmin(axis=1)
        cost = np.append(m[np.arange(n), b], np.inf)
        backs.append(b)
    ends, a = [], 0
    for b in reversed(backs):
        a = int(b[a])
        ends.append(a - 1)
    return ends + [n - 1]


def svd_scene_count(distance: np.ndarray) -> int:
    """OSG's automatic scene count (Rotman et al. 2016): the elbow of the log singular values
    of the distance matrix (the point farthest below the chord from first to last)."""
    s = np.linalg.svd(np.asarray(distance, np.float64), compute_uv=False)
    s = s[s > 1e-9 * max(s[0], 1e-300)] if s.size else s
    if s.size < 3:
        return max(1, s.size)
    y = np.log(s)
    y = (y - y[-1]) / (y[0] - y[-1])
    x = np.arange(s.size) / (s.size - 1)
    return int(np.argmax((1 - x) - y)) + 1


def _ends_prob(n: int, ends) -> np.ndarray:
    p = np.zeros(n)
    p[np.asarray(ends, int)] = 1.0
    return p


def _onehot(n: int, shots) -> np.ndarray:
    post = np.zeros((5, n))
    post[np.arange(5), shots] = 1.0
    return post


def run(seeds, n_movies, split, root: Path, windows: tuple[int, ...] = ()) -> tuple[dict, dict, dict]:
    """``windows``: also score shot coherence (auto count) at these windows ``w`` — choose it
    with ``--split val``, report it with ``--split test``."""
    scene_recs: dict[str, list] = {}
    act_recs: dict[str, list] = {}
    info = {"movies": 0, "shots": 0, "seconds": 0.0}
    for seed in seeds:
        manifest = root / f"seed{seed}" / "manifest.jsonl"
        if not manifest.exists():
            generate(manifest.parent, n_movies, seed=seed, modalities=model_set_dims("tiny"))
        for e in (e for e in read_manifest(manifest) if e.split == split):
            times = FeatureFolder(e.features).read_shot_times()
            frames = np.stack([times["start_frame"], times["end_frame"]], 1).tolist()
            feats = U.folder_features(e.features)
            n = len(frames)
            k_true = int(sum(v or 0 for v in e.scene_labels)) + 1
            t0 = time.perf_counter()
            auto = U.coherence_scenes(feats)
            info["seconds"] += time.perf_counter() - t0
            info["movies"] += 1
            info["shots"] += n
            forced = U.coherence_scenes(feats, k_true)
            dist = 1.0 - U.similarity_matrix(feats)
            band = U.band_similarity(feats, 1)[:, 0]
            uniform = [int(round(k * n / k_true)) - 1 for k in range(1, k_true)] + [n - 1]
            scores = {
                "shot-coherence, auto count": auto["prob"],
                "shot-coherence, true count": np.r_[_ends_prob(n, forced["ends"])[:-1] * 0.5
                                                    + auto["prob"][:-1] * 0.5, 1.0],
                "OSG, true count": _ends_prob(n, osg_scenes(dist, k_true)),
                "OSG, SVD-elbow count": _ends_prob(n, osg_scenes(dist, svd_scene_count(dist))),
                "adjacent cosine distance ≥ 0.5": np.r_[np.clip((1 - band[:-1]) / 2, 0, 1), 1.0],
                "uniform, true count": _ends_prob(n, uniform),
                **{f"shot-coherence, auto count, w = {w}": U.coherence_scenes(feats, window=w)["prob"]
                   for w in windows},
            }
            for name, prob in scores.items():
                scene_recs.setdefault(name, []).append({
                    "movie_id": f"{seed}/{e.movie_id}", "prob": np.asarray(prob).tolist(),
                    "label": e.scene_labels, "shot_frames": frames})
            # turning points
            ends_pred = auto["ends"]
            gold_first = [i for i, v in enumerate(e.scene_labels[:-1]) if v] + [n - 1]
            variants = {}
            for by in ("time", "index"):
                prior = P.tp_prior(times["start_s"], times["end_s"], by=by)
                variants[f"TRIPOD prior by {by}"] = ordered_turning_points(prior)
                if len(ends_pred) >= 5:
                    variants[f"TRIPOD prior by {by}, snapped to predicted scenes"] = \
                        ordered_turning_points(U.snap_to_scenes(prior, ends_pred))
                variants[f"TRIPOD prior by {by}, snapped to gold scenes"] = \
                    ordered_turning_points(U.snap_to_scenes(prior, gold_first))
            variants["TP at the prior mean position (index)"] = [
                min(n - 1, int(m * n)) for m, _ in P.TRIPOD_TP_PRIOR]
            for name, shots in variants.items():
                act_recs.setdefault(name, []).append({
                    "movie_id": f"{seed}/{e.movie_id}", "posteriors": _onehot(n, shots).tolist(),
                    "gold": e.tp_shots})
    scene = {k: scene_metrics(v) for k, v in scene_recs.items()}
    act = {k: act_metrics(v) for k, v in act_recs.items()}
    return scene, act, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--movies", type=int, default=200, help="movies per seed (20 %% are test)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--windows", default="", help="also score shot coherence at these windows, e.g. 2,3,4,6,8")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="mega-unsup-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    windows = tuple(int(w) for w in args.windows.split(",") if w)
    scene, act, info = run(seeds, args.movies, args.split, root, windows)
    print(f"{info['movies']} {args.split} movies ({info['shots']} shots), seeds {args.seeds}; "
          f"shot-coherence {1000 * info['seconds'] / info['movies']:.1f} ms per movie\n")
    print("| scenes | AP | F1 | mIoU | Recall@3s |\n|---|---|---|---|---|")
    for name, m in scene.items():
        print(f"| {name} | {m['ap']:.3f} | {m['f1']:.3f} | {m['miou']:.3f} | {m['recall_at_3s']:.3f} |")
    print("\n| turning points | TA | PA | D |\n|---|---|---|---|")
    for name, m in act.items():
        print(f"| {name} | {m['ta']:.3f} | {m['pa']:.3f} | {m['d']:.3f} |")


if __name__ == "__main__":
    main()
