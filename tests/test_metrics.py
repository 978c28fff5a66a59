"""Metrics (docs/training.md "Metrics"): sklearn cross-checks, hand-computed BaSSL/GraphTP edge cases, an
independent brute-force re-implementation, and the real studyforrest scene annotations."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import FORREST as STUDYFORREST
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.model.metrics import (
    act_metrics,
    read_records,
    scene_metrics,
    score_records,
    tp_prediction_set,
)
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    recall_score,
    roc_auc_score,
)

# ----------------------------------------------------------------------------- helpers

def _record(prob, label, frames, movie_id="m"):
    return {"movie_id": movie_id, "prob": list(prob), "label": list(label),
            "shot_frames": [list(f) for f in frames]}


def _even_frames(n: int, length: int) -> list[list[int]]:
    """n consecutive shots of ``length`` frames, end exclusive."""
    return [[i * length, (i + 1) * length] for i in range(n)]


def _random_record(rng: np.random.Generator, movie_id: str) -> dict:
    n = int(rng.integers(4, 60))
    lengths = rng.integers(0, 150, n)  # 0 = a 1-frame MovieNet shot (start == end)
    starts = np.r_[0, np.cumsum(lengths + 1)[:-1]]
    frames = np.stack([starts, starts + lengths], axis=1)
    prob = np.round(rng.random(n), 1)  # coarse: many ties and exact 0.5 values
    label = [int(v) for v in rng.choice([0, 1, -1], n, p=[0.7, 0.25, 0.05])]
    if rng.random() < 0.3:
        label[int(rng.integers(0, n))] = None
    if rng.random() < 0.5:
        label = label[:-1]
    return _record(prob, label, frames.tolist(), movie_id)


def _labelled(record):
    """(gold, prob) of the labelled shots, −1 -> 1."""
    pairs = [(abs(lab), p) for lab, p in zip(record["label"], record["prob"]) if lab is not None]
    return np.array([g for g, _ in pairs], int), np.array([p for _, p in pairs])


def _brute_miou(record) -> float | None:
    """Independent loop-and-dict re-implementation of BaSSL's mIoU for one movie."""
    results = {i: (abs(lab), int(record["prob"][i] > 0.5))
               for i, lab in enumerate(record["label"]) if lab is not None}
    frames = record["shot_frames"]

    def scenes(column):
        closed, current = [], []
        for shot in sorted(results):
            current.append(shot)
            if results[shot][column] == 1:
                closed.append((frames[current[0]][0], frames[current[-1]][1]))
                current = []
        return closed or None

    def iou(a, b):
        inter = min(a[1], b[1]) - max(a[0], b[0])
        return 0.0 if inter <= 0 else inter / (max(a[1], b[1]) - min(a[0], b[0]))

    gold, pred = scenes(0), scenes(1)
    if gold is None:
        return None
    if pred is None:
        return 0.0
    to_pred = sum(max(iou(g, p) for p in pred) for g in gold) / len(gold)
    to_gold = sum(max(iou(p, g) for g in gold) for p in pred) / len(pred)
    return (to_pred + to_gold) / 2


def _brute_recall_at_3s(record) -> float:
    labels, frames = record["label"], record["shot_frames"]
    labelled = {i for i, lab in enumerate(labels) if lab is not None}
    gold = [i for i in labelled if labels[i] != 0]
    hits = 0
    for g in gold:
        for j in range(g - 5, g + 6):
            if j in labelled and record["prob"][j] > 0.5 \
                    and abs(frames[j][1] - frames[g][1]) / 24 < 3:
                hits += 1
                break
    return hits / (len(gold) + 1e-5)


# ----------------------------------------------------------------------------- scene: sklearn

def test_pooled_and_per_movie_scores_match_sklearn():
    rng = np.random.default_rng(7)
    for trial in range(20):
        records = [_random_record(rng, f"m{trial}_{i}") for i in range(int(rng.integers(1, 6)))]
        result = scene_metrics(records)
        y = np.concatenate([_labelled(r)[0] for r in records])
        s = np.concatenate([_labelled(r)[1] for r in records])
        assert result["n_shots"] == y.size and result["n_movies"] == len(records)
        if 0 < y.sum() < y.size:
            assert result["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
            assert result["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert result["f1"] == pytest.approx(f1_score(y, s >= 0.5, zero_division=0), abs=1e-12)
        per_movie = [recall_score(*_labelled_pred(r), zero_division=0) for r in records]
        assert result["recall"] == pytest.approx(np.mean(per_movie), abs=1e-12)


def _labelled_pred(record):
    gold, prob = _labelled(record)
    return gold, (prob > 0.5).astype(int)  # argmax: an exact 0.5 is "no boundary"


def test_f1_uses_ge_and_recall_uses_gt_at_exactly_half():
    # One boundary predicted with p = 0.5: F1 counts it (>=), exact recall does not (argmax).
    result = scene_metrics([_record([0.5, 0.0, 0.0], [1, 0, 0], _even_frames(3, 10))])
    assert result["f1"] == 1.0
    assert result["recall"] == 0.0


def test_minus_one_labels_count_as_boundaries_and_null_shots_are_ignored():
    frames = _even_frames(5, 24)
    with_minus = scene_metrics([_record([0.9, 0.1, 0.8, 0.3, 0.7], [-1, 0, 1, None, 0], frames)])
    plain = scene_metrics([_record([0.9, 0.1, 0.8, 0.7], [1, 0, 1, 0], _even_frames(4, 24))])
    assert with_minus["n_shots"] == 4
    assert with_minus["ap"] == plain["ap"] == 1.0
    assert with_minus["recall"] == 1.0


def test_degenerate_pooled_scores_are_zero():
    result = scene_metrics([_record([0.2, 0.7], [0, 0], _even_frames(2, 24))])
    assert result["ap"] == 0.0 and result["auc"] == 0.0 and result["f1"] == 0.0
    assert result["recall"] == 0.0 and result["recall_at_3s"] == 0.0
    assert result["miou_skipped"] == ["m"] and result["miou"] == 0.0


# ----------------------------------------------------------------------------- scene: Recall@3s

@pytest.mark.parametrize("shot_frames, gold, predicted, expected_hits", [
    (48, [2], [3], 1),            # next shot ends 2 s later: hit
    (48, [2], [4], 0),            # 4 s away: miss
    (72, [2], [3], 0),            # exactly 3 s: the window is strict
    (2, [2], [8], 0),             # 6 shots away (0.5 s): outside the ±5 shot neighbourhood
    (2, [2], [7], 1),             # 5 shots away: inside
    (24, [2, 4], [3], 2),         # one prediction may satisfy several gold boundaries
    (24, [2], [], 0),
])
def test_recall_at_3s_hand_cases(shot_frames, gold, predicted, expected_hits):
    n = 12
    label = [int(i in gold) for i in range(n)]
    prob = [0.9 if i in predicted else 0.1 for i in range(n)]
    result = scene_metrics([_record(prob, label, _even_frames(n, shot_frames))])
    assert result["recall_at_3s"] == pytest.approx(expected_hits / (len(gold) + 1e-5), abs=1e-15)


def test_recall_at_3s_never_uses_the_unlabelled_last_shot():
    # Gold boundary at shot 4 (the last labelled one); the only prediction is on the unlabelled
    # last shot, 1 s later: BaSSL has no result for that shot, so it cannot hit.
    result = scene_metrics([_record([0.1] * 5 + [0.9], [0, 0, 0, 0, 1], _even_frames(6, 24))])
    assert result["recall_at_3s"] == 0.0


def test_recall_at_3s_matches_brute_force_on_random_records():
    rng = np.random.default_rng(11)
    for i in range(40):
        record = _random_record(rng, f"r{i}")
        expected = _brute_recall_at_3s(record)
        assert scene_metrics([record])["recall_at_3s"] == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- scene: mIoU

def test_miou_hand_case_with_dropped_trailing_shot():
    # Gold scenes [0, 20) and [20, 50); shot 5 follows the last boundary and is dropped.
    # Prediction: one scene [0, 50) (shot 5 dropped again). IoUs 20/50 and 30/50.
    frames = _even_frames(6, 10)
    result = scene_metrics([_record([0.1, 0.2, 0.1, 0.3, 0.9, 0.2], [0, 1, 0, 0, 1, 0], frames)])
    assert result["miou"] == pytest.approx(((0.4 + 0.6) / 2 + 0.6) / 2)


def test_miou_zero_length_scene_and_no_plus_one():
    # A 1-frame MovieNet shot [20, 20] (inclusive end) as its own predicted scene: BaSSL asserts
    # start < end and crashes; here it simply overlaps nothing.
    frames = [[0, 9], [10, 19], [20, 20], [21, 30]]
    result = scene_metrics([_record([0.1, 0.9, 0.9, 0.9], [0, 1, 0, 1], frames)])
    to_pred = (1.0 + 9 / 10) / 2        # gold [0,19] ~ pred [0,19]; gold [20,30] ~ pred [21,30]
    to_gold = (1.0 + 0.0 + 9 / 10) / 3
    assert result["miou"] == pytest.approx((to_pred + to_gold) / 2)


def test_miou_no_prediction_scores_zero_and_no_gold_is_skipped():
    frames = _even_frames(4, 10)
    no_pred = _record([0.1] * 4, [0, 1, 0, 1], frames, "no_pred")
    no_gold = _record([0.9] * 4, [0, 0, 0, 0], frames, "no_gold")
    perfect = _record([0.1, 0.9, 0.1, 0.9], [0, 1, 0, 1], frames, "perfect")
    result = scene_metrics([no_pred, no_gold, perfect])
    assert result["miou_skipped"] == ["no_gold"]
    assert result["miou"] == pytest.approx((0.0 + 1.0) / 2)


def test_miou_matches_brute_force_on_random_records():
    rng = np.random.default_rng(3)
    checked = 0
    for i in range(60):
        record = _random_record(rng, f"r{i}")
        expected = _brute_miou(record)
        result = scene_metrics([record])
        if expected is None:
            assert result["miou_skipped"] == [record["movie_id"]]
        else:
            checked += 1
            assert result["miou"] == pytest.approx(expected, abs=1e-12)
    assert checked > 40


# ----------------------------------------------------------------------------- scene: real data

def _studyforrest_record() -> tuple[dict, np.ndarray]:
    """Forrest Gump research cut: a shot is a boundary when the next shot starts a new scene
    (scene starts are matched to the nearest shot start); frames = seconds × 24. The last shot
    is left unlabelled, as in MovieNet. Returns the record and the shot durations (s)."""
    with open(STUDYFORREST / "shots.csv") as f:
        starts = np.unique([float(r["start"]) for r in csv.DictReader(f)])
    with open(STUDYFORREST / "scenes.csv") as f:
        scene_starts = [float(r["start"]) for r in csv.DictReader(f)]
    with open(STUDYFORREST / "segments.csv") as f:
        movie_end = float(list(csv.DictReader(f))[-1]["end"])
    ends = np.r_[starts[1:], movie_end]
    label = np.zeros(starts.size, int)
    for t in scene_starts:
        first_shot = int(np.argmin(np.abs(starts - t)))
        if first_shot > 0:
            label[first_shot - 1] = 1
    frames = np.stack([np.round(starts * 24), np.round(ends * 24)], axis=1).astype(int)
    record = _record(label.astype(float), label[:-1].tolist(), frames.tolist(), "forrest")
    return record, ends - starts


def test_real_annotations_perfect_prediction_scores_one():
    record, _ = _studyforrest_record()
    assert sum(record["label"]) > 150
    result = scene_metrics([record])
    for key in ("ap", "f1", "recall", "miou", "auc"):
        assert result[key] == pytest.approx(1.0, abs=1e-12), key
    assert result["recall_at_3s"] == pytest.approx(1.0, abs=1e-6)  # hits / (#gold + 1e-5)
    assert result["miou_skipped"] == []


def test_real_annotations_shifted_prediction():
    record, durations = _studyforrest_record()
    gold = np.flatnonzero(record["label"])
    n = len(record["prob"])

    def shifted(gold_subset):
        label = np.zeros(n - 1, int)
        label[gold_subset] = 1
        prob = np.zeros(n)
        prob[gold_subset + 1] = 1.0  # every boundary predicted one shot late
        return _record(prob, label.tolist(), record["shot_frames"], "forrest")

    everything = scene_metrics([shifted(gold)])
    assert everything["recall"] < 0.6  # only single-shot scenes survive the shift
    assert everything["recall_at_3s"] > everything["recall"]
    assert everything["recall_at_3s"] == pytest.approx(_brute_recall_at_3s(shifted(gold)))

    # Boundaries followed by a short (< 3 s) shot: a one-shot-late prediction ends < 3 s later,
    # so Recall@3s stays ~1 while exact recall drops; followed by long shots it collapses.
    short = gold[durations[gold + 1] < 3.0]
    long = gold[(durations[gold + 1] >= 3.0) & (gold + 2 < n)]
    assert len(short) >= 15 and len(long) >= 100
    short_result = scene_metrics([shifted(short)])
    long_result = scene_metrics([shifted(long)])
    assert short_result["recall_at_3s"] == pytest.approx(1.0, abs=1e-6)
    assert short_result["recall"] < 0.5
    assert long_result["recall_at_3s"] < 0.7


# ----------------------------------------------------------------------------- acts

@pytest.mark.parametrize("posterior, expected", [
    ([0.1, 0.5, 0.5, 0.2, 0.1], [1, 2, 3]),   # tie between 1 and 2 -> highest index
    ([0.9, 0.1, 0.0, 0.0, 0.0], [0, 1, 2]),   # argmax 0 -> shifted right
    ([0.0, 0.0, 0.0, 0.1, 0.9], [2, 3, 4]),   # argmax N-1 -> shifted left
    ([0.3, 0.3, 0.3], [0, 1, 2]),             # all tied -> argmax 2 -> {0, 1, 2}
    ([0.2, 0.8], [0, 1]),                     # fewer than 3 units: all of them
    ([1.0], [0]),
])
def test_tp_prediction_set(posterior, expected):
    assert tp_prediction_set(posterior, len(posterior)) == expected


def _act_records():
    n = 10
    onehot = np.eye(n)
    tied = np.zeros(n)
    tied[[4, 6]] = 0.5
    movie_a = {"movie_id": "a",
               "posteriors": [onehot[0], onehot[9], tied, onehot[5], onehot[3]],
               "gold": [[2, 7], [5], [4], [4, 5, 6, 7], []]}
    movie_b = {"movie_id": "b", "posteriors": [[0.4, 0.6]] * 5,
               "gold": [[1], [0], [0, 1], [1], [0]]}
    for m in (movie_a, movie_b):
        m["posteriors"] = [list(map(float, p)) for p in m["posteriors"]]
    return [movie_a, movie_b]


def test_act_metrics_hand_computed():
    # Movie a (N=10): S = {0,1,2}, {7,8,9}, {5,6,7} (tie 4/6 -> 6), {4,5,6}, {2,3,4}.
    #   hits 1, 0, 0, 3, 0 of |G| 2, 1, 1, 4, 0; distances 0, 2, 1, 0, 10000 (empty G).
    # Movie b (N=2): S = {0, 1} for every TP: all 6 gold units hit, distances 0.
    result = act_metrics(_act_records())
    assert result["ta"] == pytest.approx(10 / 14)
    assert result["pa"] == pytest.approx(7 / 10)
    assert result["d"] == pytest.approx((0.2 + 0.1 + 10000 / 10) / 10)
    movie_a_iou = (1 / 4 + 0 + 0 + 3 / 4 + 0) / 5
    movie_b_iou = (1 / 2 + 1 / 2 + 1 + 1 / 2 + 1 / 2) / 5
    assert result["ta_iou"] == pytest.approx((movie_a_iou + movie_b_iou) / 2)
    assert result["n_movies"] == 2


def test_act_metrics_perfect_and_duplicate_gold():
    n = 40
    posteriors = [np.eye(n)[k * 8 + 3].tolist() for k in range(5)]
    gold = [[k * 8 + 3, k * 8 + 3] for k in range(5)]  # a duplicate counts once
    result = act_metrics([{"movie_id": "p", "posteriors": posteriors, "gold": gold}])
    assert result["ta"] == 1.0 and result["pa"] == 1.0 and result["d"] == 0.0
    assert result["ta_iou"] == pytest.approx(1 / 3)  # a 1-unit gold set against a 3-unit window


def _scene_map_records():
    """Movie a: 10 shots in 6 screenplay scenes; movie b: no shot->scene map."""
    a = {"movie_id": "a", "shot_scenes": [0, 0, 1, 1, 1, 2, 3, 3, 4, 5],
         "posteriors": [np.eye(10)[k].tolist() for k in (1, 4, 6, 8, 9)],
         "gold": [[0], [2, 3], [9], [8], [5]]}
    b = {"movie_id": "b", "posteriors": [np.eye(4)[0].tolist()] * 5, "gold": [[0]] * 5}
    return [a, b]


def test_act_metrics_scene_level_hand_computed():
    # Shot level, movie a (N=10): S = {0,1,2} {3,4,5} {5,6,7} {7,8,9} {7,8,9} (argmax 9 shifts
    #   in); hits 1, 1, 0, 1, 0 of |G| 1, 2, 1, 1, 1; distances 0, 0, 2, 0, 2 (/10).
    #   Movie b (N=4): S = {0,1,2} for every TP, all 5 hit.
    # Scene level, movie a only (b has no map), N = 6 scenes: predicted shots 1, 4, 6, 8, 9 lie in
    #   scenes 0, 1, 3, 4, 5 -> S = {0,1,2} {0,1,2} {2,3,4} {3,4,5} {3,4,5}; G = the gold shots'
    #   scenes {0} {1} {5} {4} {2} -> hits 1, 1, 0, 1, 0; distances 0, 0, 1, 0, 1 (/6).
    result = act_metrics(_scene_map_records())
    assert result["ta"] == pytest.approx(8 / 11)
    assert result["pa"] == pytest.approx(8 / 10)
    assert result["d"] == pytest.approx((0.2 + 0.2) / 10)
    assert result["scene_ta"] == pytest.approx(3 / 5)
    assert result["scene_pa"] == pytest.approx(3 / 5)
    assert result["scene_d"] == pytest.approx((1 / 6 + 1 / 6) / 5)
    assert result["scene_ta_iou"] == pytest.approx((1 / 3 + 1 / 3 + 0 + 1 / 3 + 0) / 5)
    assert result["scene_n_movies"] == 1 and result["n_movies"] == 2


def test_act_metrics_scene_level_merges_gold_shots_of_one_scene_and_breaks_ties_high():
    # 6 shots in scenes [0, 0, 1, 1, 2, 3] (N = 4). TP1: tie between shots 0 and 5 -> shot 5,
    # scene 3 -> S = {1, 2, 3}; its gold shots 2 and 3 are one scene {1}: TA counts it once.
    post = [[0.5, 0, 0, 0, 0, 0.5]] + [np.eye(6)[0].tolist()] * 4
    gold = [[2, 3], [0], [1], [4], [5]]
    result = act_metrics([{"movie_id": "m", "posteriors": post, "gold": gold, "shot_scenes": [0, 0, 1, 1, 2, 3]}])
    # TPs 2-5 predict shot 0 -> scene 0 -> S = {0, 1, 2}: gold scenes 0, 0, 2, 3 -> hits 1, 1, 1, 0.
    assert result["scene_ta"] == pytest.approx(4 / 5)
    assert result["scene_pa"] == pytest.approx(4 / 5)
    assert result["scene_d"] == pytest.approx((1 / 4) / 5)
    assert "scene_ta" not in act_metrics([{"movie_id": "m", "posteriors": post, "gold": gold}])


@pytest.mark.parametrize("scenes", [[0, 1], [0, -1, 0, 0, 0, 0], [0, 1.5, 0, 0, 0, 0], "0,0"])
def test_act_metrics_rejects_a_bad_scene_map(scenes):
    post = [np.eye(6)[0].tolist()] * 5
    with pytest.raises(MegaPipeError, match="'shot_scenes'"):
        act_metrics([{"movie_id": "m", "posteriors": post, "gold": [[0]] * 5, "shot_scenes": scenes}])


def test_score_cli_reports_scene_level_act_scores(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _scene_map_records()))
    out = subprocess.run([sys.executable, "-m", "mega_pipe.pipeline.cli", "score", "--task", "act", str(path)],
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert result["scene_ta"] == pytest.approx(3 / 5) and result["ta"] == pytest.approx(8 / 11)


# ----------------------------------------------------------------------------- validation, I/O

@pytest.mark.parametrize("task, record, message", [
    ("scene", {"movie_id": "x", "prob": [0.1], "label": [0]}, "'shot_frames'"),
    ("scene", {"movie_id": "x", "prob": [0.1, 2.0], "label": [0, 1],
               "shot_frames": [[0, 1], [1, 2]]}, "probabilities"),
    ("scene", {"movie_id": "x", "prob": [0.1, 0.2, 0.3], "label": [0],
               "shot_frames": [[0, 1]] * 3}, "'label'"),
    ("scene", {"movie_id": "x", "prob": [0.1, 0.2], "label": [0, 2],
               "shot_frames": [[0, 1], [1, 2]]}, "entry 1"),
    ("scene", {"movie_id": "x", "prob": [0.1, float("nan")], "label": [0, 1],
               "shot_frames": [[0, 1], [1, 2]]}, "NaN"),
    ("scene", {"movie_id": "x", "prob": [0.1, 0.2], "label": [0, 1],
               "shot_frames": [[0, 1], [5, 2]]}, "start frame"),
    ("scene", {"prob": [0.1]}, "movie_id"),
    ("act", {"movie_id": "x", "posteriors": [[0.1, 0.9]] * 4, "gold": [[0]] * 5}, "'posteriors'"),
    ("act", {"movie_id": "x", "posteriors": [[0.1, 0.9]] * 5,
             "gold": [[0], [1], [2], [0], [1]]}, "TP3"),
    ("act", {"movie_id": "x", "posteriors": [[0.1, 0.9]] * 5, "gold": [[0]] * 4}, "'gold'"),
])
def test_malformed_records_name_movie_and_field(task, record, message):
    with pytest.raises(MegaPipeError, match=message) as info:
        score_records(task, [record])
    if "movie_id" in record:
        assert "'x'" in str(info.value)


def test_score_records_rejects_duplicates_empty_and_unknown_task():
    record = _record([0.9, 0.1], [1, 0], _even_frames(2, 24))
    with pytest.raises(MegaPipeError, match="more than one record"):
        score_records("scene", [record, record])
    with pytest.raises(MegaPipeError, match="no records"):
        score_records("act", [])
    with pytest.raises(MegaPipeError, match="unknown task"):
        score_records("shots", [record])


def test_read_records_round_trip_and_bad_line(tmp_path):
    path = tmp_path / "records.jsonl"
    records = _act_records()
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    assert score_records("act", read_records(path)) == act_metrics(records)
    path.write_text(json.dumps(records[0]) + "\n{not json\n")
    with pytest.raises(MegaPipeError, match=r"records.jsonl:2: not JSON"):
        read_records(path)
    with pytest.raises(MegaPipeError, match="missing.jsonl: no such file"):
        read_records(tmp_path / "missing.jsonl")


def test_import_needs_numpy_only():
    code = ("import sys, mega_pipe.model.metrics; "
            "print(sorted(m for m in ('torch', 'sklearn', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
