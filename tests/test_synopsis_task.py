"""The synopsis task (TRIPOD sentence-level turning points): TRIPOD CSV -> synopsis-only feature
folders with the real MiniLM encoder, ``train/eval/score --task synopsis`` through the CLI,
TRIPOD's sentence-level metrics, the position baseline, and the act model starting from a
synopsis checkpoint (its teacher)."""
from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mega_pipe.extractors.registry import build_extractors
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.features import FeatureFolder
from mega_pipe.manifests.schema import read_manifest, write_manifest
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.manifests.tripod import read_tripod_csv
from mega_pipe.model.baselines import PositionBaseline, choose_position_prior
from mega_pipe.model.checkpoint import read_checkpoint
from mega_pipe.model.config import config_to_dict, load_config, synopsis_model_config
from mega_pipe.model.metrics import act_metrics, score_records, synopsis_metrics, synopsis_prediction
from mega_pipe.model.data import pack_synopses
from mega_pipe.model.mega import SynopsisModel
from mega_pipe.model.tasks import SynopsisTask, smoothed_targets
from mega_pipe.model.train import TrainOptions, train
from mega_pipe.pipeline.cli import main

from conftest import SHARED, need

TRIPOD_CSV = SHARED / "tripod" / "TRIPOD_synopses_train.csv"


# --- metrics (hand-computed) -----------------------------------------------------------------


def _onehot(n: int, *peaks: int) -> list[list[float]]:
    return [np.eye(n)[p].tolist() for p in peaks]


def test_synopsis_metrics_hand_computed():
    # Movie a (N=10): predictions 2, 5, 5, 9, 0; gold {2}, {4, 6}, {5}, {7}, {1, 3}.
    #   hits 1, 0, 1, 0, 0 (of |G| 1, 2, 1, 1, 2); distances 0, 1, 0, 2, 1 (/10).
    # Movie b (N=4): predictions 0, 1, 2, 3, 3; gold {0}, {0, 1}, {3}, {3}, {} (not scored).
    #   hits 1, 1, 0, 1 (of |G| 1, 2, 1, 1); distances 0, 0, 1, 0 (/4).
    records = [
        {"movie_id": "a", "posteriors": _onehot(10, 2, 5, 5, 9, 0), "gold": [[2], [4, 6], [5], [7], [1, 3]]},
        {"movie_id": "b", "posteriors": _onehot(4, 0, 1, 2, 3, 3), "gold": [[0], [0, 1], [3], [3], []]},
    ]
    result = synopsis_metrics(records)
    assert result["ta"] == pytest.approx(5 / 12)   # gold sentences hit / gold sentences
    assert result["pa"] == pytest.approx(5 / 9)    # events with a hit / scored events
    assert result["d"] == pytest.approx(((0 + 1 + 0 + 2 + 1) / 10 + (0 + 0 + 1 + 0) / 4) / 9)
    assert result["n_events"] == 9 and result["n_movies"] == 2
    assert score_records("synopsis", records) == result


def test_synopsis_metrics_have_no_window_unlike_graphtp():
    """One sentence off is a miss for TRIPOD's sentence-level TA, a hit in GraphTP's ±1 window."""
    records = [{"movie_id": "x", "posteriors": _onehot(20, 3, 7, 10, 14, 18), "gold": [[4], [8], [11], [15], [19]]}]
    assert synopsis_metrics(records)["ta"] == 0.0
    assert synopsis_metrics(records)["d"] == pytest.approx(1 / 20)
    assert act_metrics(records)["ta"] == 1.0 and act_metrics(records)["d"] == 0.0


def test_synopsis_metric_ties_go_to_the_first_sentence():
    records = [{"movie_id": "x", "posteriors": [[0.5, 0.5, 0.0]] * 5, "gold": [[0]] * 5}]
    assert synopsis_metrics(records)["ta"] == 1.0


def test_minimum_bayes_risk_prediction_trades_a_hit_for_distance():
    # a sharp but lonely peak at the start, most of the mass spread around the middle
    post = np.array([0.3] + [0.0] * 3 + [0.1] * 7 + [0.0] * 9)
    assert synopsis_prediction(post) == 0 == synopsis_prediction(post, 0.0)
    assert 4 <= synopsis_prediction(post, 4.0) <= 10            # inside the spread mass, not the peak
    n = len(post)
    risk = [post[p] - 4.0 * sum(post[j] * abs(p - j) / n for j in range(n)) for p in range(n)]
    assert np.isclose(risk[synopsis_prediction(post, 4.0)], max(risk))
    # a record's own prediction is what gets scored
    records = [{"movie_id": "x", "posteriors": [post.tolist()] * 5, "gold": [[7]] * 5}]
    assert synopsis_metrics(records)["ta"] == 0.0
    assert synopsis_metrics([{**records[0], "prediction": [7] * 5}]) == {
        "ta": 1.0, "pa": 1.0, "d": 0.0, "n_movies": 1, "n_events": 5}
    with pytest.raises(MegaPipeError, match="field 'prediction' must be 5"):
        synopsis_metrics([{**records[0], "prediction": [7, 7, 7, 7, 20]}])
    with pytest.raises(MegaPipeError, match="decode_distance_weight: only for task"):
        load_config("act-small", decode_distance_weight=1.0)


# --- position baseline and label smoothing ------------------------------------------------------


def test_position_baseline_predicts_the_mode_of_training_positions():
    # TP k's gold sits at relative positions ~ (k + 1) / 6 in three training synopses.
    train_set = [(12, [[1], [3], [5], [7], [9]]), (6, [[0], [1], [2], [3], [4]]), (24, [[3], [7], [11], [15], [19]])]
    prior = PositionBaseline.fit(train_set, bandwidth=0.01)
    post = prior.posteriors(30)
    assert post.shape == (5, 30) and np.allclose(post.sum(axis=1), 1.0)
    # The posterior is the Gaussian-kernel mass of each sentence's span, computed here by hand.
    points = np.array([1.5 / 12, 0.5 / 6, 3.5 / 24])     # TP1's (g + 0.5) / N
    edges = np.arange(31) / 30
    cdf = 0.5 * (1 + np.vectorize(math.erf)((edges[None] - points[:, None]) / (0.01 * math.sqrt(2))))
    expected = np.diff(cdf, axis=1).sum(axis=0)
    assert np.allclose(post[0], expected / expected.sum())
    # Gold at the centres of sentences 1, 3, 5, 7, 9 of 10-sentence synopses: relative
    # positions 0.15, 0.35, ..., the centres of sentences 4, 10, 16, 22, 28 of 30.
    clean = PositionBaseline.fit([(10, [[1], [3], [5], [7], [9]])] * 2, bandwidth=0.02)
    records = clean.records([("m", 30, [[4], [10], [15], [20], [25]])])
    assert [int(np.argmax(p)) for p in records[0]["posteriors"]] == [4, 10, 16, 22, 28]
    assert synopsis_metrics(records)["ta"] == pytest.approx(2 / 5)


def test_position_baseline_needs_gold_for_every_tp():
    with pytest.raises(MegaPipeError, match="every TP"):
        PositionBaseline.fit([(10, [[1], [], [3], [4], [5]])])


def test_label_smoothing_moves_mass_to_neighbours():
    q = np.zeros((5, 5), np.float32)
    q[0, 0] = 1.0          # edge: all smoothing mass goes to sentence 1
    q[2, 1] = 1.0          # middle: half to each neighbour
    q[[3, 4], 2] = 0.5     # two annotators
    q[4, 3] = q[4, 4] = 1.0
    s = smoothed_targets(q, 0.2)
    assert np.allclose(s.sum(axis=0), 1.0)
    assert np.allclose(s[:, 0], [0.8, 0.2, 0, 0, 0])
    assert np.allclose(s[:, 1], [0, 0.1, 0.8, 0.1, 0])
    assert np.allclose(s[:, 2], [0, 0, 0.05, 0.4 + 0.1, 0.4 + 0.05])
    assert np.allclose(smoothed_targets(q, 0.0), q)


# --- TRIPOD CSV -> synopsis inputs (real MiniLM) -> train / eval / score ------------------------


@pytest.fixture(scope="module")
def tripod_small(tmp_path_factory):
    """The first rows of the real TRIPOD training CSV (5 movies, one with 2 annotations)."""
    rows = list(csv.DictReader(open(need(TRIPOD_CSV), encoding="utf-8-sig", newline="")))
    names, keep = [], []
    for row in rows:
        base = row["movie_name"].rsplit("_", 1)[0] if row["movie_name"][-2:-1] == "_" else row["movie_name"]
        if base not in names:
            if len(names) == 5:
                continue
            names.append(base)
        keep.append(row)
    path = tmp_path_factory.mktemp("tripod") / "tripod_small.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    return path


@pytest.fixture(scope="module")
def tripod_features(tripod_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("tripod_features")
    args = ["manifest", "tripod", "--train", str(tripod_small), "--features", str(root / "features"),
            "--manifest", str(root / "manifest.jsonl"), "--synopsis-dir", str(root / "synopses"), "--synopses-only"]
    assert main(args) == 0
    return root, args


def test_tripod_rows_become_synopsis_only_folders_with_minilm(tripod_small, tripod_features, capsys):
    root, args = tripod_features
    entries = read_manifest(root / "manifest.jsonl")
    movies = {m.name: m for m in read_tripod_csv(tripod_small)}
    assert len(entries) == len(movies) == 5
    encoder = build_extractors("paper", ["subtitle"], offline=True)["subtitle"]
    for entry in entries:
        folder = FeatureFolder(entry.features)
        assert folder.is_synopsis_only and not folder.shots_path.exists()
        assert folder.problem(synopsis=True, shots=False) is None
        assert "synopsis only" in folder.problem(synopsis=True)       # not usable for shot tasks
        texts, vectors = folder.read_synopsis()
        movie = next(m for m in movies.values() if m.sentences == texts)
        assert entry.tp_sentences == movie.tp_sentences
        assert vectors.shape == (len(texts), 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        assert np.allclose(vectors[:2], encoder.encode(texts[:2]), atol=1e-5)
    # A rerun reuses every folder (same cache key) without loading the encoder again.
    capsys.readouterr()
    assert main(args) == 0
    assert "0 embedded now, 5 reused" in capsys.readouterr().out


def test_train_eval_score_synopsis_end_to_end(tripod_features, tmp_path, capsys):
    root, _ = tripod_features
    entries = read_manifest(root / "manifest.jsonl")
    for entry, split in zip(entries, ["train", "train", "train", "val", "test"]):
        entry.split = split
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, entries)
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--task", "synopsis", "--config", "synopsis", "--manifest", str(manifest),
                 "--out", str(run), "--epochs", "2", "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "synopsis" and summary["modalities"] == [] and summary["select_metric"] == "-loss"
    assert {"ta", "pa", "d", "loss"} <= set(summary["best_val"])
    state = read_checkpoint(run / "best.pt")
    assert state["task"] == "synopsis" and state["sentence_dim"] == 384 and state["synopsis_model"] is None

    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--manifest", str(manifest), "--split", "test",
                 "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in open(result["predictions"])]
    assert len(records) == 1 and np.allclose(np.sum(records[0]["posteriors"], axis=1), 1.0, atol=1e-5)
    # the packaged config's decision rule is in the records, and scored
    weight = load_config("synopsis").decode_distance_weight
    assert state["config"]["decode_distance_weight"] == weight
    assert records[0]["prediction"] == [synopsis_prediction(p, weight) for p in records[0]["posteriors"]]
    assert main(["score", "--task", "synopsis", result["predictions"]]) == 0
    assert json.loads(capsys.readouterr().out) == result["metrics"]


def test_synopsis_model_starts_as_the_position_prior_chosen_on_its_training_synopses(synth, tmp_path):
    """SynopsisTask.prepare: the position head holds the log of the prior that
    ``choose_position_prior`` picks on the training synopses, read at each sentence's centre,
    and the content head is zero, so the untrained model's logits are exactly that prior."""
    task = SynopsisTask()
    movies = task.load([e for e in read_manifest(synth) if e.split == "train"], [])
    cfg = load_config("synopsis")
    torch.manual_seed(0)
    model = SynopsisModel(cfg, movies[0].synopsis.shape[1])
    assert model.head.weight.abs().sum() > 0
    task.prepare(SimpleNamespace(model=model, train_movies=movies))
    prior, _ = choose_position_prior([(len(m.synopsis), m.tp_sentences) for m in movies])
    table = np.log(prior.posteriors(cfg.position_bins).T + 1e-4)        # (bins, 5)
    assert model.head.weight.abs().sum() == 0 and model.head.bias.abs().sum() == 0
    model.eval()
    for movie in movies:
        n = len(movie.synopsis)
        sents, mask = pack_synopses([movie], torch.device("cpu"))
        logits = model(sents, mask)[0][0].detach().numpy()
        centre_bins = np.floor((np.arange(n) + 0.5) / n * cfg.position_bins).astype(int)
        np.testing.assert_allclose(logits, table[centre_bins], atol=1e-5)
        assert centre_bins[0] > 0           # sentence 0 reads its centre's bin, not bin 0
    # training moves the content head off zero: the sentences are read after all
    train("synopsis", synth, tmp_path / "run", TrainOptions(config="synopsis", epochs=2, device="cpu", progress=False))
    trained = read_checkpoint(tmp_path / "run" / "best.pt")["model"]
    assert trained["head.weight"].abs().sum() > 0


# --- the act model's teacher ---------------------------------------------------------------------

MODALITIES = {"clip": 16, "place": 12}
ACT_OVERRIDES = {"width": 16, "ffn_width": 32, "n_heads": 2, "n_bottleneck": 10}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), 6, seed=3, modalities=MODALITIES,
                    params=SynthParams(scenes=(10, 14), sentences=(8, 12)))


def test_act_training_starts_from_a_synopsis_checkpoint(synth, tmp_path):
    # the teacher trained from the act config itself, sized by the act run's modalities
    # (README: `train --task synopsis --config act-sync --modalities ...`)
    teacher_run = tmp_path / "teacher"
    train("synopsis", synth, teacher_run, TrainOptions(
        config="act-small", config_overrides=ACT_OVERRIDES, modalities=list(MODALITIES), epochs=1,
        device="cpu", progress=False))
    teacher = read_checkpoint(teacher_run / "best.pt")
    want = config_to_dict(synopsis_model_config(load_config("act-small", **ACT_OVERRIDES), len(MODALITIES)))
    assert {k: v for k, v in teacher["config"].items() if k != "train"} == \
        {k: v for k, v in want.items() if k != "train"}
    assert teacher["config"]["width"] == ACT_OVERRIDES["width"] * len(MODALITIES)

    act_run = tmp_path / "act"
    summary = train("act", synth, act_run, TrainOptions(
        config="act-small", config_overrides=ACT_OVERRIDES, epochs=1, lr=1e-12, device="cpu", progress=False,
        synopsis_checkpoint=teacher_run / "best.pt"))
    act = read_checkpoint(act_run / "best.pt")
    assert act["settings"]["synopsis_checkpoint"] == str(teacher_run / "best.pt")
    assert set(act["synopsis_model"]) == set(teacher["model"])
    for name, value in teacher["model"].items():   # lr 1e-12: still the teacher's weights
        assert torch.allclose(act["synopsis_model"][name], value, atol=1e-6), name
    assert act["normalization"]["synopsis"] == teacher["normalization"]["synopsis"]
    assert summary["task"] == "act"

    # Without the checkpoint the synopsis network starts elsewhere (a real change, not a no-op).
    plain = tmp_path / "plain"
    train("act", synth, plain, TrainOptions(
        config="act-small", config_overrides=ACT_OVERRIDES, epochs=1, lr=1e-12, device="cpu", progress=False))
    weights = read_checkpoint(plain / "best.pt")["synopsis_model"]
    assert not torch.allclose(weights["head.weight"], teacher["model"]["head.weight"])


def test_synopsis_checkpoint_must_fit_the_act_synopsis_network(synth, tmp_path):
    train("synopsis", synth, tmp_path / "teacher", TrainOptions(
        config="synopsis", epochs=1, device="cpu", progress=False))
    with pytest.raises(MegaPipeError, match="does not fit.*width 64 vs 32"):
        train("act", synth, tmp_path / "act", TrainOptions(
            config="act-small", config_overrides=ACT_OVERRIDES, epochs=1, device="cpu", progress=False,
            synopsis_checkpoint=tmp_path / "teacher" / "best.pt"))
    with pytest.raises(MegaPipeError, match="name the act run's modalities"):
        train("synopsis", synth, tmp_path / "teacher2", TrainOptions(
            config="act-small", epochs=1, device="cpu", progress=False))
    with pytest.raises(MegaPipeError, match="for task act"):
        train("scene", synth, tmp_path / "scene", TrainOptions(
            epochs=1, device="cpu", progress=False, synopsis_checkpoint=tmp_path / "teacher" / "best.pt"))
