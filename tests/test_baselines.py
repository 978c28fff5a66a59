"""The turning-point baselines a model is measured against (model/baselines.py)."""
from __future__ import annotations

import numpy as np
import pytest
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.model.baselines import LinearTPBaseline, PositionBaseline, TheoryBaseline, choose_position_prior
from mega_pipe.model.metrics import act_metrics, synopsis_metrics
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


def test_theory_baseline_peaks_at_the_sentence_containing_the_published_mean_position():
    """The screenwriting-theory prior (TRIPOD's published TP positions, nothing fitted): per TP
    a distribution over the N sentences whose argmax is sentence ⌊mean · N⌋, and on synopses
    whose gold sits exactly there it is always right."""
    theory = TheoryBaseline()
    means = [mean for mean, _ in TRIPOD_TP_PRIOR]
    assert np.allclose(means, [0.1139, 0.3186, 0.5065, 0.7415, 0.8943])
    for n in range(3, 61):
        post = theory.posteriors(n)
        assert post.shape == (5, n) and np.allclose(post.sum(axis=1), 1.0) and (post >= 0).all()
        assert post.argmax(axis=1).tolist() == [int(m * n) for m in means]
    # spread: TP3 (std 12.15 %) is flatter than TP5 (std 4.74 %)
    post = theory.posteriors(40)
    assert post[2].max() < post[4].max()
    # records score as the argmax: gold at ⌊mean · N⌋ -> TA 1, D 0; one sentence later -> TA 0, D 1/N
    movies = [("a", 20, [[int(m * 20)] for m in means]), ("b", 31, [[int(m * 31)] for m in means])]
    assert synopsis_metrics(theory.records(movies)) == {"ta": 1.0, "pa": 1.0, "d": 0.0, "n_movies": 2, "n_events": 10}
    shifted = [("a", 20, [[int(m * 20) + 1] for m in means])]
    result = synopsis_metrics(theory.records(shifted))
    assert result["ta"] == 0.0 and result["d"] == pytest.approx(1 / 20)
    # a different prior moves the peak: nothing is fitted, but the positions are the parameters
    moved = TheoryBaseline(((0.52, 0.05),) * 5).posteriors(10)
    assert (moved.argmax(axis=1) == 5).all()
    with pytest.raises(MegaPipeError):
        theory.posteriors(0)


def _synopses(rng, n_synopses, centres, spread):
    """(N, gold) per synopsis: TP n's gold sentence at relative position centres[n] ± spread."""
    out = []
    for _ in range(n_synopses):
        n = int(rng.integers(25, 45))
        out.append((n, [[int(np.clip((c + rng.normal(0, spread)) * n, 0, n - 1))] for c in centres]))
    return out


def test_position_prior_is_chosen_by_held_out_likelihood_on_the_training_synopses():
    rng = np.random.default_rng(0)
    # gold far from the theory positions, tightly clustered: a KDE wins and peaks there
    planted = (0.2, 0.4, 0.6, 0.8, 0.97)
    prior, name = choose_position_prior(_synopses(rng, 40, planted, 0.01))
    assert name.startswith("kde-") and isinstance(prior, PositionBaseline)
    assert prior.bandwidth == float(name[len("kde-"):])
    assert np.abs(prior.posteriors(50).argmax(axis=1) - np.array(planted) * 50).max() <= 1
    # gold drawn from the theory Gaussians themselves: the theory prior wins
    theory = [(mean, std) for mean, std in TRIPOD_TP_PRIOR]
    synopses = []
    for _ in range(60):
        n = int(rng.integers(25, 45))
        synopses.append((n, [[int(np.clip(rng.normal(m, s), 0, 0.999) * n)] for m, s in theory]))
    prior, name = choose_position_prior(synopses)
    assert name == "theory" and isinstance(prior, TheoryBaseline)
    # one synopsis: nothing to hold out, the parameter-free prior
    assert choose_position_prior(synopses[:1])[1] == "theory"
