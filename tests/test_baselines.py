"""The turning-point baselines a model is measured against (model/baselines.py)."""
from __future__ import annotations

import numpy as np
from mega_pipe.model.baselines import LinearTPBaseline
from mega_pipe.model.metrics import act_metrics
from mega_pipe.model.prior import TRIPOD_TP_PRIOR, tp_prior_by_index


def _movies(rng, n_movies, direction, n_shots=120):
    """Random shots; TP n's shot lies near TRIPOD's mean and carries direction[n]."""
    movies = []
    for _ in range(n_movies):
        x = [rng.normal(size=(n_shots, 6)), rng.normal(size=(n_shots, 4))]
        gold = []
        for k, (mean, _) in enumerate(TRIPOD_TP_PRIOR):
            shot = int(np.clip(round((mean + rng.normal(0, 0.03)) * n_shots), 0, n_shots - 1))
            x[0][shot] += direction[k, :6]
            x[1][shot] += direction[k, 6:]
            gold.append([shot])
        movies.append((x, gold))
    return movies


def test_linear_tp_baseline_finds_the_planted_directions_and_beats_the_prior():
    rng = np.random.default_rng(0)
    direction = 2.5 * np.linalg.qr(rng.normal(size=(10, 5)))[0].T   # 5 orthogonal directions
    train, val, test = (_movies(rng, n, direction) for n in (30, 6, 10))
    linear = LinearTPBaseline.select(train, val)
    cos = [abs(w @ d) / np.linalg.norm(w) / np.linalg.norm(d) for w, d in zip(linear.weights, direction)]
    assert min(cos) > 0.8 and linear.l2 in (0.01, 0.1, 1.0, 3.0, 10.0, 30.0)

    def score(posteriors):
        return act_metrics([{"movie_id": str(i), "posteriors": p.tolist(), "gold": g}
                            for i, (p, (_, g)) in enumerate(zip(posteriors, test))])
    with_content = score([linear.posteriors(x) for x, _ in test])
    prior_only = score([tp_prior_by_index(120) for _ in test])
    assert with_content["ta"] > prior_only["ta"] + 0.25 and with_content["d"] < prior_only["d"]
    post = linear.posteriors(test[0][0])
    assert post.shape == (5, 120) and np.allclose(post.sum(axis=1), 1.0)
    # a zero direction is the prior itself
    flat = LinearTPBaseline(np.zeros((5, 10)), 1.0)
    assert np.allclose(flat.posteriors(test[0][0]), tp_prior_by_index(120), atol=1e-9)


def test_cross_validated_probe_needs_no_validation_movies():
    """The probe's L2 is chosen inside the training movies (held-out folds), so validation
    movies stay free to choose the epoch; it finds the planted directions as well."""
    rng = np.random.default_rng(1)
    direction = 2.5 * np.linalg.qr(rng.normal(size=(10, 5)))[0].T
    train, test = _movies(rng, 30, direction), _movies(rng, 10, direction)
    probe, l2 = LinearTPBaseline.select_cv(train, folds=5)
    assert l2 in (0.01, 0.1, 1.0, 3.0, 10.0, 30.0) and probe.l2 == l2
    np.testing.assert_allclose(probe.weights, LinearTPBaseline.fit(train, l2).weights)
    cos = [abs(w @ d) / np.linalg.norm(w) / np.linalg.norm(d) for w, d in zip(probe.weights, direction)]
    assert min(cos) > 0.8
    score = act_metrics([{"movie_id": str(i), "posteriors": probe.posteriors(x).tolist(), "gold": g}
                         for i, (x, g) in enumerate(test)])
    assert score["ta"] > 0.5
