"""Baselines a turning-point model must beat (docs/training.md).

:class:`PositionBaseline` — the position-distribution baseline of synopsis turning points
("Synopsis task"): TRIPOD's "distribution position" idea on sentences.

Per TP, the gold **relative positions** r = (g + ½) / N of the training synopses (sentence g
of N; the centre of the sentence's span of the synopsis) are smoothed with a Gaussian kernel
of width ``bandwidth``. For a synopsis of N sentences the posterior of sentence j is the kernel
mass inside [j/N, (j+1)/N), renormalised over the synopsis; its argmax (the mode at the
synopsis's own resolution) is the prediction. No content is used: this is the number a
content model must beat.

:class:`TheoryBaseline` — the parameter-free screenwriting-theory prior (TRIPOD, Papalampidi et
al., EMNLP 2019, screenwriting-theory positions; docs/sources.md): TP n is a Gaussian over the
relative position with TRIPOD's published mean and standard deviation
(:data:`prior.TRIPOD_TP_PRIOR`: 11.39±6.72, 31.86±11.26, 50.65±12.15, 74.15±8.40,
89.43±4.74 %); sentence j of N gets the Gaussian's mass over its span [j/N, (j+1)/N),
truncated to the synopsis and renormalised (:func:`prior.tp_prior_by_index`). The spans are of
equal width and the Gaussian is symmetric and unimodal, so the argmax is the sentence whose span
contains the published mean position, j = ⌊mean · N⌋. Nothing is fitted.

:func:`choose_position_prior` — the prior a synopsis model starts from, chosen on its training
synopses only: the theory prior or the position-distribution baseline at one of a few kernel
bandwidths, whichever gives the gold sentences the highest held-out log-likelihood in an inner
cross-validation over those synopses.

:func:`prior_records` — the same movies and gold predicted by that theory prior over shots (act
records) or sentences (synopsis records): the parameter-free number ``train`` and ``eval``
put beside every turning-point result (:data:`PRIOR_BASELINE`).

:class:`LinearTPBaseline` — the shot-level reference of issue 10: TRIPOD's position prior
(:func:`prior.tp_prior`) plus **one linear direction per TP** fitted on the training
movies' gold TP shots. Shot i of a movie scores ``log prior_n(i) + w_n · x_i`` for TP n, with
x_i the shot's features standardised on the training shots (as the trainer does), centred on
the movie's mean shot, all modalities concatenated (a missing value is 0); the posterior is the
softmax over the movie's shots. w_n minimises the cross-entropy of that softmax at the gold
shots (several gold shots share the mass) plus ``l2`` · |w_n|², full-batch L-BFGS;
:meth:`LinearTPBaseline.select` picks ``l2`` by TA on validation movies (on the relational
synthetic set, judged on its test movies, the best value is 1 with 16 training movies and 3
with 53, and 0.01 loses 0.14–0.17 TA against it). It is what a model gets from "where TPs
usually are" and "what a TP shot looks like" alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..manifests.errors import MegaPipeError
from .metrics import act_metrics
from .prior import TRIPOD_TP_PRIOR, tp_prior, tp_prior_by_index

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
            cdf = 0.5 * (1.0 + torch.erf(torch.from_numpy(z)).numpy())   # (n_gold, n + 1), float64
            mass = np.diff(cdf, axis=1).sum(axis=0)
            out[k] = mass / mass.sum() if mass.sum() > 0 else np.full(n_sentences, 1.0 / n_sentences)
        return out

    def records(self, movies: Sequence[tuple[str, int, Sequence[Sequence[int]]]]) -> list[dict]:
        """Prediction records (``metrics.synopsis_metrics``) for (movie id, N, gold) triples."""
        return [{"movie_id": m, "posteriors": self.posteriors(n).tolist(), "gold": [list(g) for g in gold]}
                for m, n, gold in movies]


@dataclass(frozen=True)
class TheoryBaseline:
    """TRIPOD's screenwriting-theory positions as a sentence distribution (module docstring)."""

    prior: tuple[tuple[float, float], ...] = TRIPOD_TP_PRIOR   # (mean, std) per TP

    def posteriors(self, n_sentences: int) -> np.ndarray:
        """(5, n_sentences): per TP the Gaussian's mass over each sentence's span, summing to 1;
        the argmax is the sentence containing the TP's mean position."""
        if n_sentences < 1:
            raise MegaPipeError("a synopsis needs at least one sentence")
        return tp_prior(np.arange(n_sentences), np.arange(1, n_sentences + 1), prior=self.prior)

    def records(self, movies: Sequence[tuple[str, int, Sequence[Sequence[int]]]]) -> list[dict]:
        """Prediction records (``metrics.synopsis_metrics``) for (movie id, N, gold) triples."""
        return [{"movie_id": m, "posteriors": self.posteriors(n).tolist(), "gold": [list(g) for g in gold]}
                for m, n, gold in movies]


#: The key under which ``train`` (each epoch's validation metrics) and ``eval`` report the
#: theory prior's metrics on the same movies (:func:`prior_records`).
PRIOR_BASELINE = "tripod_prior"


def prior_records(records: Sequence[dict]) -> list[dict]:
    """``records`` (act or synopsis prediction records) with each movie's posteriors replaced by
    TRIPOD's published position prior by index over the same shots or sentences (the
    :class:`TheoryBaseline`'s distribution; nothing fitted) and no decision rule (argmax)."""
    return [{**{k: v for k, v in r.items() if k not in ("posteriors", "prediction")},
             "posteriors": tp_prior_by_index(len(r["posteriors"][0])).tolist()} for r in records]


#: Kernel bandwidths :func:`choose_position_prior` tries for the position-distribution baseline.
PRIOR_BANDWIDTHS = (0.02, 0.03, 0.05, 0.08)


def _gold_log_likelihood(posteriors: np.ndarray, tps: Sequence[Sequence[int]]) -> float:
    """Σ over the TPs with gold of log P(gold set) (several annotators: the mass on any of them)."""
    return float(sum(math.log(posteriors[k, list(gold)].sum() + 1e-12) for k, gold in enumerate(tps) if gold))


def choose_position_prior(synopses: Sequence[tuple[int, Sequence[Sequence[int]]]], folds: int = 5,
                          bandwidths: Sequence[float] = PRIOR_BANDWIDTHS
                          ) -> tuple["TheoryBaseline | PositionBaseline", str]:
    """The position prior for ``synopses`` ((N, 5 gold sentence lists) each, the training
    synopses only): :class:`TheoryBaseline` or :class:`PositionBaseline` at one of
    ``bandwidths``, whichever has the highest mean log-likelihood of the gold sentences on the
    held-out synopses of a ``folds``-fold cross-validation inside ``synopses`` (synopsis i in
    fold i mod ``folds``; the KDE is refitted without the held-out fold). Returns the winner,
    refitted on all of ``synopses``, and its name ("theory" or "kde-<bandwidth>"). With fewer
    than two synopses, or no KDE that can be fitted, the theory prior (nothing to fit)."""
    theory = TheoryBaseline()
    if len(synopses) < 2:
        return theory, "theory"
    folds = max(2, min(folds, len(synopses)))
    fold_of = np.arange(len(synopses)) % folds
    scores = {"theory": np.mean([_gold_log_likelihood(theory.posteriors(n), tps) for n, tps in synopses])}
    for bandwidth in bandwidths:
        total = []
        try:
            for k in range(folds):
                kde = PositionBaseline.fit([s for s, f in zip(synopses, fold_of) if f != k], bandwidth)
                total += [_gold_log_likelihood(kde.posteriors(n), tps)
                          for (n, tps), f in zip(synopses, fold_of) if f == k]
        except MegaPipeError:      # an inner fold without gold for some TP: no KDE to compare
            continue
        scores[f"kde-{bandwidth:g}"] = np.mean(total)
    best = max(scores, key=lambda name: scores[name])    # ties: the first (theory)
    if best == "theory":
        return theory, best
    return PositionBaseline.fit(synopses, float(best[len("kde-"):])), best


def _tp_inputs(features: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate a movie's standardised modality arrays and centre them on its mean shot."""
    x = np.concatenate([np.asarray(f, np.float64) for f in features], axis=1)
    return x - x.mean(axis=0, keepdims=True)


@dataclass(frozen=True)
class LinearTPBaseline:
    weights: np.ndarray  # (5, D): one direction per TP over the concatenated features
    l2: float

    @classmethod
    def fit(cls, movies: Sequence[tuple[Sequence[np.ndarray], Sequence[Sequence[int]]]],
            l2: float = 1e-2, iterations: int = 200) -> "LinearTPBaseline":
        """``movies``: (standardised modality arrays (n_shots, D_m) in a fixed order, 5 gold shot
        lists) per training movie."""
        if not movies:
            raise MegaPipeError("the linear TP baseline needs at least one training movie")
        xs, log_priors, targets = [], [], []
        for feats, gold in movies:
            if len(gold) != N_TURNING_POINTS or not all(gold):
                raise MegaPipeError(f"the linear TP baseline needs gold shots for all {N_TURNING_POINTS} TPs")
            x = _tp_inputs(feats)
            n = len(x)
            target = np.zeros((N_TURNING_POINTS, n))
            for k, g in enumerate(gold):
                target[k, list(g)] = 1.0 / len(g)
            xs.append(torch.as_tensor(x))
            log_priors.append(torch.as_tensor(np.log(tp_prior_by_index(n) + 1e-12)))
            targets.append(torch.as_tensor(target))
        w = torch.zeros(N_TURNING_POINTS, xs[0].shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = sum(-(t * torch.log_softmax(lp + w @ x.T, dim=1)).sum() for x, lp, t in
                       zip(xs, log_priors, targets)) / len(xs) + l2 * (w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(w.detach().numpy().copy(), float(l2))

    @classmethod
    def select(cls, train: Sequence[tuple[Sequence[np.ndarray], Sequence[Sequence[int]]]],
               val: Sequence[tuple[Sequence[np.ndarray], Sequence[Sequence[int]]]],
               grid: Sequence[float] = (0.01, 0.1, 1.0, 3.0, 10.0, 30.0)) -> "LinearTPBaseline":
        """Fit once per ``l2`` of ``grid`` on ``train``; keep the best TA (then lowest D) on ``val``."""
        best, best_key = None, None
        for l2 in grid:
            fitted = cls.fit(train, l2)
            m = act_metrics([{"movie_id": str(i), "posteriors": fitted.posteriors(f).tolist(), "gold": g}
                             for i, (f, g) in enumerate(val)])
            if best_key is None or (m["ta"], -m["d"]) > best_key:
                best, best_key = fitted, (m["ta"], -m["d"])
        return best

    def posteriors(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """(5, n_shots) posteriors of one movie (arrays as in :meth:`fit`)."""
        x = _tp_inputs(features)
        n = len(x)
        logits = np.log(tp_prior_by_index(n) + 1e-12) + self.weights @ x.T
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)
