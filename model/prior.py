"""TRIPOD's turning-point position prior (docs/unsupervised.md, "Turning points"); numpy only.

Turning point n is a Gaussian over the relative position in the movie with TRIPOD's mean and
standard deviation (:data:`TRIPOD_TP_PRIOR`); a shot's probability is the Gaussian's mass over
the shot's span (by shot index, ``[i, i+1) / N``, the default: TRIPOD's positions are sequence
positions and the TP metrics count shots; or by time). The checkpoint-free turning points
(``unsupervised.py``), the MEGA shot model's TP position head (``mega.tripod_log_prior``) and
the shot-level baseline (``baselines.LinearTPBaseline``) all start from it.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..manifests.errors import MegaPipeError

#: (mean, std) of the five TPs' relative positions, fraction of the screenplay: TRIPOD's
#: statistics (Papalampidi, Keller & Lapata, EMNLP 2019), 11.39±6.72, 31.86±11.26, 50.65±12.15,
#: 74.15±8.40, 89.43±4.74 %; where these numbers come from: docs/unsupervised.md. The
#: synopsis-sentence positions of TRIPOD_synopses_train.csv agree within 4 points
#: (tests/test_unsupervised.py).
TRIPOD_TP_PRIOR = ((0.1139, 0.0672), (0.3186, 0.1126), (0.5065, 0.1215), (0.7415, 0.0840),
                   (0.8943, 0.0474))


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf, otypes=[float])(np.asarray(z) / math.sqrt(2.0)))


def tp_prior(start_s: Sequence[float], end_s: Sequence[float], by: str = "index",
             prior: Sequence[tuple[float, float]] = TRIPOD_TP_PRIOR) -> np.ndarray:
    """(5, N): TP n's probability of each shot = the mass of N(mean_n, std_n) over the shot's
    span in relative position (``by="index"``: [i, i+1) / N; ``"time"``: [start_s, end_s) /
    movie span), renormalised over [0, 1] (the Gaussian truncated to the movie: piling the tails
    onto the first or last shot would make a spike there that outweighs the mode)."""
    starts, ends = np.asarray(start_s, np.float64), np.asarray(end_s, np.float64)
    n = starts.size
    if n == 0:
        raise MegaPipeError("turning points need at least one shot")
    if by == "time":
        t0, span = starts[0], max(ends[-1] - starts[0], 1e-9)
        lo, hi = (starts - t0) / span, (ends - t0) / span
    elif by == "index":
        lo, hi = np.arange(n) / n, np.arange(1, n + 1) / n
    else:
        raise MegaPipeError(f"by must be 'time' or 'index', got {by!r}")
    rows = []
    for mean, std in prior:
        mass = _normal_cdf((hi - mean) / std) - _normal_cdf((lo - mean) / std)
        mass = np.clip(mass, 0.0, None)
        rows.append(mass / mass.sum() if mass.sum() > 0 else np.full(n, 1.0 / n))
    return np.stack(rows)


def tp_prior_by_index(n_shots: int) -> np.ndarray:
    """(5, n_shots): :func:`tp_prior` by shot index, which needs only the number of shots."""
    return tp_prior(np.arange(n_shots), np.arange(1, n_shots + 1))
