"""Checkpoint-free boundaries (model/unsupervised.py, docs/unsupervised.md) on real components:
the synthetic benchmark's feature folders, the TRIPOD CSV, segment's decoder, export/report."""
from __future__ import annotations

import csv
import json
import re
import time

import numpy as np
import pytest
from conftest import SHARED, need
from mega_pipe.extractors.registry import model_set_dims
from mega_pipe.manifests.boundaries import VERSION as BOUNDARIES_VERSION
from mega_pipe.manifests.boundaries import ordered_turning_points
from mega_pipe.manifests.features import FeatureFolder
from mega_pipe.manifests.schema import read_manifest
from mega_pipe.manifests.synth import generate
from mega_pipe.model import prior as P
from mega_pipe.model import unsupervised as U
from mega_pipe.model.metrics import scene_metrics


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return read_manifest(generate(root, 6, seed=3, modalities=model_set_dims("tiny")))


def _record(entry, prob):
    t = FeatureFolder(entry.features).read_shot_times()
    return {"movie_id": entry.movie_id, "prob": np.asarray(prob).tolist(),
            "label": entry.scene_labels,
            "shot_frames": np.stack([t["start_frame"], t["end_frame"]], 1).tolist()}


def test_coherence_recovers_planted_scenes(synth):
    ours, uniform = [], []
    for e in synth:
        feats = U.folder_features(e.features)
        got = U.coherence_scenes(feats)
        n, k = len(got["prob"]), int(sum(v or 0 for v in e.scene_labels)) + 1
        assert got["ends"][-1] == n - 1 and got["ends"] == sorted(set(got["ends"]))
        assert np.all((got["prob"] >= 0) & (got["prob"] <= 1)) and got["prob"][-1] == 1.0
        # automatic count = the cuts whose confidence is >= 0.5, and no others
        assert got["ends"][:-1] == np.flatnonzero(got["prob"][:-1] >= 0.5).tolist()
        ours.append(_record(e, got["prob"]))
        p = np.zeros(n)
        p[[int(round(j * n / k)) - 1 for j in range(1, k)] + [n - 1]] = 1
        uniform.append(_record(e, p))
    m, u = scene_metrics(ours), scene_metrics(uniform)
    assert m["ap"] > 0.6 and m["ap"] > u["ap"] + 0.3, (m, u)
    assert m["f1"] > 0.6 and m["f1"] > u["f1"] + 0.3, (m, u)
    assert m["miou"] > u["miou"] + 0.2, (m, u)


def test_forced_count_gives_exactly_n_scenes(synth):
    feats = U.folder_features(synth[0].features)
    n = len(next(iter(feats.values()))[0])
    for k in (1, 2, 5, 17, n, n + 10):
        got = U.coherence_scenes(feats, k)
        assert len(got["ends"]) == min(k, n) and got["ends"][-1] == n - 1
        assert np.all((got["prob"] >= 0) & (got["prob"] <= 1))
    # the forced boundaries are the strongest cuts
    got = U.coherence_scenes(feats, 10)
    assert set(got["ends"][:-1]) == set(np.argsort(-got["novelty"])[:9].tolist())


def test_absent_modalities_and_empty_shots_are_skipped(synth):
    feats = U.folder_features(synth[1].features)
    n = len(next(iter(feats.values()))[0])
    base = U.cut_novelty(feats)
    # a modality that no shot has (count 0 everywhere, garbage values) changes nothing
    junk = dict(feats, junk=(np.full((n, 8), 1e6), np.zeros(n, bool)))
    assert np.allclose(U.cut_novelty(junk), base)
    # a shot missing one modality is compared on the others, not as a zero vector
    x, ok = feats["clip"]
    ok2 = ok.copy()
    ok2[5] = False
    x2 = x.copy()
    x2[5] = np.nan
    partial = U.band_similarity(dict(feats, clip=(x2, ok2)), 1)
    others = U.band_similarity({m: v for m, v in feats.items() if m != "clip"}, 1)
    assert np.isfinite(partial).all() and np.isclose(partial[5, 0], others[5, 0])


def test_two_thousand_shots_in_seconds():
    rng = np.random.default_rng(0)
    feats = {m: (rng.normal(size=(2000, 64)), np.ones(2000, bool)) for m in "abcdef"}
    t0 = time.perf_counter()
    got = U.coherence_scenes(feats)
    assert time.perf_counter() - t0 < 3.0 and len(got["prob"]) == 2000


def test_tripod_prior_matches_the_training_synopses():
    """The prior's means are TRIPOD's published screenplay positions (docs/unsupervised.md); the
    sentence positions of the released training synopses agree within 4 points."""
    rows = list(csv.DictReader(need(SHARED / "tripod" / "TRIPOD_synopses_train.csv").open()))
    pos = np.array([[(float(r[f"tp{k}"]) + 0.5) / len(re.findall(r"\[STR_SENT\]", r["synopsis_segmented"]))
                     for k in range(1, 6)] for r in rows])
    means = np.array([m for m, _ in P.TRIPOD_TP_PRIOR])
    assert np.abs(pos.mean(axis=0) - means).max() < 0.04
    assert np.all(np.diff(means) > 0)


def test_prior_turning_points_are_ordered_scene_starts(synth):
    e = synth[2]
    t = FeatureFolder(e.features).read_shot_times()
    n = len(t["start_s"])
    for by in ("index", "time"):
        prior = P.tp_prior(t["start_s"], t["end_s"], by=by)
        assert prior.shape == (5, n) and np.allclose(prior.sum(axis=1), 1)
        tps = ordered_turning_points(prior)     # unsnapped: near the prior means
        assert tps == sorted(tps) and len(set(tps)) == 5
    assert np.allclose(np.array(ordered_turning_points(P.tp_prior(t["start_s"], t["end_s"]))) / n,
                       [m for m, _ in P.TRIPOD_TP_PRIOR], atol=2 / n)
    ends = U.coherence_scenes(U.folder_features(e.features))["ends"]
    snapped = U.snap_to_scenes(P.tp_prior(t["start_s"], t["end_s"]), ends)
    assert np.allclose(snapped.sum(axis=1), 1)
    firsts = {0, *(b + 1 for b in ends[:-1])}
    tps = ordered_turning_points(snapped)
    assert len(tps) == 5 and tps == sorted(tps) and len(set(tps)) == 5
    assert set(tps) <= firsts
    assert set(np.flatnonzero(snapped.sum(axis=0))) <= firsts


@pytest.mark.parametrize("version", [1, BOUNDARIES_VERSION])
def test_v1_and_v2_documents_read_in_export_and_report(version, tmp_path):
    from mega_pipe.manifests.boundaries import read_boundaries
    from mega_pipe.pipeline.cli import main
    from mega_pipe.pipeline.export import load_source
    from test_export import make_doc

    doc = make_doc("25/1", [25, 50, 75], 100, scenes=[(0, 1), (2, 3)])
    doc["version"] = version
    if version >= 2:
        doc["methods"] = {"scenes": {"name": "shot-coherence", "scenes": "auto", "window": 4},
                          "acts": None}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(doc))
    assert load_source(path).has("scenes")
    assert read_boundaries(path)["version"] == version
    assert main(["export", str(path), "--out", str(tmp_path / "s.csv")]) == 0
    assert len(list(csv.DictReader((tmp_path / "s.csv").open()))) == 2
