"""How segment turns model outputs into scenes and ordered turning points."""
from __future__ import annotations

import itertools

import numpy as np
from mega_pipe.manifests.boundaries import (
    ordered_turning_points,
    scenes_from_probabilities,
)


def brute_force(post):
    n = post.shape[1]
    best, arg = -np.inf, None
    for combo in itertools.combinations(range(n), 5):
        score = sum(np.log(post[k, s]) for k, s in enumerate(combo))
        if score > best:
            best, arg = score, list(combo)
    return arg


def test_ordered_turning_points_is_the_exact_optimum():
    rng = np.random.default_rng(0)
    for n in (5, 6, 9, 12):
        for _ in range(20):
            post = rng.dirichlet(np.ones(n) * 0.3, size=5)
            got = ordered_turning_points(post)
            assert got == sorted(got) and len(set(got)) == 5
            score = lambda c: sum(np.log(post[k, s]) for k, s in enumerate(c))
            assert np.isclose(score(got), score(brute_force(post)))


def test_ordered_turning_points_fixes_crossed_argmaxes():
    post = np.full((5, 10), 0.01)
    for k, s in enumerate([1, 5, 3, 7, 9]):     # TP3's argmax lies before TP2's
        post[k, s] = 0.9
    post[2, 6] = 0.5                            # ...its second choice keeps the order
    assert ordered_turning_points(post) == [1, 5, 6, 7, 9]


def test_fewer_shots_than_turning_points_relaxes_order():
    post = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    got = ordered_turning_points(post)
    assert got == sorted(got) and got[0] == 0 and got[-1] == 1


def test_scenes_from_probabilities():
    prob = np.array([0.1, 0.7, 0.2, 0.5, 0.3, 0.1])
    assert scenes_from_probabilities(prob, 0.5) == [(0, 1, 0.7), (2, 3, 0.5), (4, 5, 1.0)]
    assert scenes_from_probabilities(prob, 0.9) == [(0, 5, 1.0)]
