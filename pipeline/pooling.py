"""Shot pooling: each shot gets the mean of the samples whose input interval overlaps it.

MEGA supplementary, Sec. 3: "For each shot, we assign the features whose input has overlap with
the shot time interval". Any positive-length overlap counts; several samples are mean-pooled (the
supplement does not say how; our choice, docs/contract.md, "Pooling"); a shot with no overlapping
sample gets a zero vector and a count of 0.
"""
from __future__ import annotations

import numpy as np


def pool(shot_start: np.ndarray, shot_end: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,
         vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``vectors`` over samples overlapping each shot.

    Shapes: shots (S,), samples (N,), vectors (N, D). Returns (means (S, D) float32, counts (S,)
    int32). Samples and shots need not be sorted; the work is O((S + N) log N + pairs).
    """
    shot_start = np.asarray(shot_start, np.float64)
    shot_end = np.asarray(shot_end, np.float64)
    t_start = np.asarray(t_start, np.float64)
    t_end = np.asarray(t_end, np.float64)
    vectors = np.asarray(vectors, np.float32)
    n_shots, dim = len(shot_start), vectors.shape[1] if vectors.ndim == 2 else 0
    sums = np.zeros((n_shots, dim), np.float64)
    counts = np.zeros(n_shots, np.int32)
    if len(t_start) == 0 or n_shots == 0:
        return sums.astype(np.float32), counts
    # Candidates for shot i are the samples starting before its end; among them those ending
    # after its start overlap (min(e, t_end) - max(s, t_start) > 0 <=> t_start < e and t_end > s).
    order = np.argsort(t_start, kind="stable")
    starts_sorted = t_start[order]
    max_len = float(np.max(t_end - t_start))
    for i in range(n_shots):
        s, e = shot_start[i], shot_end[i]
        if e <= s:
            continue
        lo = np.searchsorted(starts_sorted, s - max_len, side="left")
        hi = np.searchsorted(starts_sorted, e, side="left")
        cand = order[lo:hi]
        hit = cand[(t_end[cand] > s) & (t_start[cand] < e)]
        if len(hit):
            sums[i] = vectors[hit].sum(axis=0, dtype=np.float64)
            counts[i] = len(hit)
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    return means.astype(np.float32), counts
