"""The position-distribution baseline of synopsis turning points (docs/training.md, "Synopsis
task"): TRIPOD's "distribution position" idea on sentences.

Per TP, the gold **relative positions** r = (g + ½) / N of the training synopses (sentence g
of N; the centre of the sentence's span of the synopsis) are smoothed with a Gaussian kernel
of width ``bandwidth``. For a synopsis of N sentences the posterior of sentence j is the kernel
mass inside [j/N, (j+1)/N), renormalised over the synopsis; its argmax (the mode at the
synopsis's own resolution) is the prediction. No content is used: this is the number a
content model must beat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from mega_pipe.manifests.errors import MegaPipeError

N_TURNING_POINTS = 5


@dataclass(frozen=True)
class PositionBaseline:
    positions: tuple[np.ndarray, ...]  # per TP the training gold relative positions
    bandwidth: float = 0.02

    @classmethod
    def fit(cls, synopses: Sequence[tuple[int, Sequence[Sequence[int]]]],
            bandwidth: float = 0.02) -> "PositionBaseline":
        """``synopses``: (number of sentences, 5 gold sentence lists) per training synopsis."""
        per_tp: list[list[float]] = [[] for _ in range(N_TURNING_POINTS)]
        for n, tps in synopses:
            if len(tps) != N_TURNING_POINTS:
                raise MegaPipeError(f"expected {N_TURNING_POINTS} turning points, got {len(tps)}")
            for k, gold in enumerate(tps):
                per_tp[k].extend((g + 0.5) / n for g in gold)
        if not all(per_tp) or bandwidth <= 0:
            raise MegaPipeError("the position baseline needs gold for every TP and a bandwidth > 0")
        return cls(tuple(np.asarray(p, np.float64) for p in per_tp), float(bandwidth))

    def posteriors(self, n_sentences: int) -> np.ndarray:
        """(5, n_sentences): per TP the kernel mass of each sentence's span, summing to 1."""
        edges = np.arange(n_sentences + 1) / n_sentences
        out = np.empty((N_TURNING_POINTS, n_sentences))
        for k, r in enumerate(self.positions):
            z = (edges[None, :] - r[:, None]) / (self.bandwidth * math.sqrt(2.0))
            cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z))   # (n_gold, n + 1)
            mass = np.diff(cdf, axis=1).sum(axis=0)
            out[k] = mass / mass.sum() if mass.sum() > 0 else np.full(n_sentences, 1.0 / n_sentences)
        return out

    def records(self, movies: Sequence[tuple[str, int, Sequence[Sequence[int]]]]) -> list[dict]:
        """Prediction records (``metrics.synopsis_metrics``) for (movie id, N, gold) triples."""
        return [{"movie_id": m, "posteriors": self.posteriors(n).tolist(), "gold": [list(g) for g in gold]}
                for m, n, gold in movies]
