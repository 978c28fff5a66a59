"""Checkpoint-free scene and act boundaries (docs/unsupervised.md); numpy only.

Scenes — **shot coherence across the cut** (the "video coherence" family: Kender & Yeo, CVPR
1998; Rasheed & Shah, CVPR 2003, backward shot coherence). A cut after shot *i* opens a new
scene when no shot of the last ``window`` shots before it resembles any shot of the next
``window`` shots after it: within a scene the camera returns to earlier set-ups (shot / reverse
shot, A-B-A-B), so some shot across an in-scene cut matches well even when the adjacent pair
differs. Novelty ``g_i = 1 − max_{a ∈ (i−w, i], b ∈ (i, i+w]} sim(a, b)``.

``sim`` is the cosine similarity of the shots' pooled features per modality, after standardising
each modality over the movie's shots (mean 0, unit variance per dimension: removes the movie's
common offset, which otherwise makes every pair look alike), **averaged over the modalities
both shots have** (a null vector or a count of 0 is skipped, never read as zeros; a pair with no
common modality has similarity 0, the standardised mean).

Count and confidence: a two-component 1-D Gaussian mixture is fitted (EM) to the movie's cut
novelties; a cut's confidence is the posterior of the high-novelty component, made monotone
in ``g`` (running maximum). With an automatic count a scene ends at every cut with confidence
≥ 0.5 (the Bayes decision between the two components); ``scenes=N`` takes the N−1 cuts of
highest novelty instead. Measured against Optimal Sequential Grouping (Rotman et al., 2016/17;
implemented in the benchmark) and adjacent-shot distance on the synthetic benchmark:
bench/bench_unsupervised.py.

Acts — **TRIPOD position prior** (``prior.tp_prior``: turning point n is a Gaussian over the
relative position in the movie with TRIPOD's mean and standard deviation). With scenes, only
the scenes' first shots keep their probability (:func:`snap_to_scenes`), so the decoded TPs
open scenes.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder, vectors_of

SCENE_METHOD = "shot-coherence"
ACT_METHOD = "tripod-prior"
DEFAULT_WINDOW = 4   # shots each side of a cut; bench/bench_unsupervised.py (w = 3..8 measured)

# --------------------------------------------------------------------------- features

def folder_features(folder: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """modality -> (vectors (N, D) float64, valid (N,) bool) of a feature folder's shots;
    valid = a finite vector with count > 0."""
    ff = FeatureFolder(folder)
    mods = ff.modalities()
    table = ff.read_shots([c for m in mods for c in (m, f"{m}_count")])
    out = {}
    for m in mods:
        x = vectors_of(table[m]).astype(np.float64)
        ok = (table[f"{m}_count"].to_numpy(zero_copy_only=False) > 0) & np.isfinite(x).all(axis=1)
        out[m] = (x, ok)
    return out


def _unit_rows(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Standardise over the valid rows, then L2-normalise; invalid rows are 0."""
    x = np.where(ok[:, None], x, 0.0)
    if ok.sum() >= 2:
        mu, sd = x[ok].mean(axis=0), x[ok].std(axis=0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norm > 0, norm, 1.0)
    x[~ok] = 0.0
    return x


def band_similarity(features: Mapping[str, tuple[np.ndarray, np.ndarray]], width: int
                    ) -> np.ndarray:
    """``B[i, k-1] = sim(i, i + k)`` for k = 1..width (0 past the movie's end): the
    modality-averaged cosine similarity of docs above. O(N · width · D) time and memory."""
    if not features:
        raise MegaPipeError("no modality to compare shots with")
    n = len(next(iter(features.values()))[0])
    num, den = np.zeros((n, width)), np.zeros((n, width))
    for x, ok in features.values():
        u = _unit_rows(np.asarray(x, np.float64), np.asarray(ok, bool))
        for k in range(1, min(width, n - 1) + 1):
            num[:n - k, k - 1] += np.einsum("ij,ij->i", u[:-k], u[k:])
            den[:n - k, k - 1] += ok[:-k] & ok[k:]
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def similarity_matrix(features: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The full (N, N) modality-averaged similarity (O(N²) memory; for OSG and inspection)."""
    num = den = 0.0
    for x, ok in features.values():
        u, o = _unit_rows(np.asarray(x, np.float64), np.asarray(ok, bool)), np.asarray(ok, float)
        num, den = num + u @ u.T, den + np.outer(o, o)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


# --------------------------------------------------------------------------- scenes

def cut_novelty(features: Mapping[str, tuple[np.ndarray, np.ndarray]],
                window: int = DEFAULT_WINDOW) -> np.ndarray:
    """``g[i]`` (i < N−1) = 1 − the best similarity between a shot of (i−w, i] and one of
    (i, i+w]: the novelty of the cut after shot i, in [0, 2]."""
    if window < 1:
        raise MegaPipeError(f"window must be at least 1 shot, got {window}")
    band = band_similarity(features, 2 * window - 1)
    n = band.shape[0]
    best = np.full(n - 1, -np.inf)
    for da in range(window):                 # a = i − da
        for db in range(1, window + 1):      # b = i + db, offset k = da + db
            k = da + db
            i = np.arange(da, n - db)        # i − da ≥ 0, i + db ≤ n − 1
            if i.size:
                best[i] = np.maximum(best[i], band[i - da, k - 1])
    return 1.0 - best


def mixture_confidence(g: np.ndarray, iters: int = 200) -> np.ndarray:
    """Posterior of the high-mean component of a 2-Gaussian mixture fitted to ``g`` by EM,
    made non-decreasing in ``g`` (running maximum in ``g`` order). In [0, 1]."""
    x = np.asarray(g, np.float64)
    if x.size < 2 or np.ptp(x) < 1e-12:
        return np.zeros_like(x)
    mu = np.percentile(x, [25, 90]).astype(np.float64)
    sd = np.full(2, x.std() / 2 + 1e-6)
    pi = np.array([0.7, 0.3])
    for _ in range(iters):
        ll = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(pi)
        ll -= ll.max(axis=1, keepdims=True)
        r = np.exp(ll)
        r /= r.sum(axis=1, keepdims=True)
        nk = r.sum(axis=0) + 1e-12
        pi = np.clip(nk / nk.sum(), 1e-6, None)
        mu = (r * x[:, None]).sum(axis=0) / nk
        sd = np.sqrt((r * (x[:, None] - mu) ** 2).sum(axis=0) / nk) + 1e-3 * np.ptp(x) + 1e-9
    post = r[:, int(np.argmax(mu))]
    order = np.argsort(x, kind="stable")
    mono = np.empty_like(post)
    mono[order] = np.maximum.accumulate(post[order])
    return mono


def coherence_scenes(features: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     n_scenes: int | None = None, window: int = DEFAULT_WINDOW) -> dict:
    """Group shots into scenes without a checkpoint.

    Returns ``{"prob": (N,) confidence that shot i is the last of its scene (1.0 for the last
    shot), "novelty": (N−1,), "ends": sorted last shots of every scene}``. ``n_scenes`` forces
    the count (clipped to [1, N]); None = automatic (confidence ≥ 0.5)."""
    n = len(next(iter(features.values()))[0]) if features else 0
    if n < 2:
        raise MegaPipeError(f"scenes need at least 2 shots, got {n}")
    g = cut_novelty(features, window)
    conf = mixture_confidence(g)
    if n_scenes is None:
        cuts = np.flatnonzero(conf >= 0.5)
    else:
        if n_scenes < 1:
            raise MegaPipeError(f"--scenes must be at least 1, got {n_scenes}")
        k = min(int(n_scenes), n) - 1
        cuts = np.sort(np.argsort(-g, kind="stable")[:k])
    return {"prob": np.append(conf, 1.0), "novelty": g,
            "ends": [int(c) for c in cuts] + [n - 1]}


# --------------------------------------------------------------------------- turning points

def snap_to_scenes(posteriors: np.ndarray, scene_ends: Sequence[int]) -> np.ndarray:
    """Keep each row's probability at the first shots of scenes only, renormalised (rows still
    sum to 1), so a decoded TP is always the first shot of a scene: the scene start where the
    prior is highest, i.e. nearest its mode. (Summing each scene's mass onto its first shot
    instead favours long scenes, whose start can lie far from the mode: measured TA 0.053 vs
    0.126 on the synthetic benchmark, docs/unsupervised.md.)"""
    post = np.asarray(posteriors, np.float64)
    ends = np.asarray(scene_ends, int)
    firsts = np.r_[0, ends[:-1] + 1]
    out = np.zeros_like(post)
    out[:, firsts] = post[:, firsts]
    total = out.sum(axis=1, keepdims=True)
    uniform = np.zeros_like(post)
    uniform[:, firsts] = 1.0 / firsts.size
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), uniform)
