"""Evaluation metrics for scene segmentation (MovieNet-318) and turning points (TRIPOD).

The definitions follow BaSSL's and GraphTP's code *exactly* (docs/training.md "Metrics"): MEGA
compares its numbers with BaSSL (scene) and GraphTP (acts), so the metrics must reproduce those
codebases' behaviour, edge cases included, or the comparison is meaningless. Everything is plain
numpy (no torch, no sklearn at import time) so scoring works anywhere the records can be read.

Scene record (one per movie)::

    {"movie_id": str, "prob": [p, ...], "label": [0 | 1 | -1 | null, ...],
     "shot_frames": [[start_frame, end_frame], ...]}

``prob`` is the probability that the shot is the **last shot of a scene**. ``label``: 1 means a
scene boundary after the shot; −1 (MovieNet's ambiguous boundary) counts as 1, like BaSSL's
``abs(label)`` and LGSS's −1 → 1; ``null`` marks an unlabelled shot. ``label`` may also
be one entry shorter than ``prob``: MovieNet has no label for the last shot of a movie, so that
shot is unlabelled. Unlabelled shots are left out of every metric, which is what BaSSL does:
its per-movie result dict simply has no entry for them (they are never scored, never a
Recall@3s neighbour, never part of an mIoU scene). ``shot_frames`` are frame numbers on a
24 fps grid (BaSSL hard-codes 24 fps): MovieNet's ``shot_movie318`` columns, or
``round(seconds * 24)`` for our own shots. ``end_frame`` may be inclusive (MovieNet) or
exclusive (our contract); the metrics use it exactly as given, like BaSSL.

Act record (one per movie)::

    {"movie_id": str, "posteriors": [[p per unit] x 5], "gold": [[unit, ...] x 5],
     "shot_scenes": [scene index per unit]}          # optional

A "unit" is a shot or a screenplay scene (docs/training.md "Evaluation gold"), N = number of units
of the movie. ``shot_scenes`` (units are shots) maps every shot to its screenplay scene; records
that carry it are also scored at **scene level**, GraphTP's protocol: the predicted shot of each
TP is mapped to its scene, S = that scene and its two neighbours, G = the scenes of the gold
shots, N = the number of scenes (max index + 1), then GraphTP's TA/PA/D.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..manifests.errors import MegaPipeError
from ..manifests.jsonio import read_jsonl

N_TURNING_POINTS = 5
# BaSSL MovieNetMetric constants: the fps of the frame grid, the ±5 neighbour shots and
# the strict 3 s window of Recall@3s, and the epsilon in its denominator.
FPS = 24.0
RECALL_NEIGHBOUR_SHOTS = 5
RECALL_SECONDS = 3.0
RECALL_EPS = 1e-5
# GraphTP's find_minimum_distance starts from 10000, so a TP without gold keeps that distance.
GRAPHTP_NO_GOLD_DISTANCE = 10000


# --------------------------------------------------------------------------- record parsing

@dataclass(frozen=True)
class _SceneMovie:
    movie_id: str
    prob: np.ndarray       # (n,) float64
    labelled: np.ndarray   # (n,) bool: the shot has a label and is scored
    gold: np.ndarray       # (n,) bool: labelled and a scene boundary (1 or −1)
    frames: np.ndarray     # (n, 2) float64 start/end frame


@dataclass(frozen=True)
class _ActMovie:
    movie_id: str
    posteriors: np.ndarray      # (5, N) float64
    gold: list[frozenset[int]]  # 5 sets of unit indices
    shot_scenes: np.ndarray | None = None  # (N,) int: screenplay scene of every unit (shot)
    prediction: list[int] | None = None  # synopsis records: the model's decoded unit per TP


def _movie_id(record: object, index: int) -> str:
    if not isinstance(record, dict):
        raise MegaPipeError(f"record {index}: expected a JSON object, got {type(record).__name__}")
    movie_id = record.get("movie_id")
    if not isinstance(movie_id, str) or not movie_id:
        raise MegaPipeError(f"record {index}: missing or empty 'movie_id'")
    return movie_id


def _field(record: dict, movie_id: str, name: str) -> object:
    if name not in record:
        raise MegaPipeError(f"movie {movie_id!r}: missing field {name!r}")
    return record[name]


def _float_array(value: object, movie_id: str, name: str, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise MegaPipeError(f"movie {movie_id!r}: field {name!r} must hold numbers only") from None
    if arr.ndim != ndim:
        raise MegaPipeError(f"movie {movie_id!r}: field {name!r} must be a {ndim}-d list, "
                            f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise MegaPipeError(f"movie {movie_id!r}: field {name!r} contains NaN or infinity")
    return arr


def _scene_movie(record: object, index: int) -> _SceneMovie:
    movie_id = _movie_id(record, index)
    prob = _float_array(_field(record, movie_id, "prob"), movie_id, "prob", 1)
    n = prob.size
    if n == 0:
        raise MegaPipeError(f"movie {movie_id!r}: field 'prob' is empty")
    if prob.min() < 0.0 or prob.max() > 1.0:
        raise MegaPipeError(f"movie {movie_id!r}: field 'prob' must hold probabilities in [0, 1]")
    labels = _field(record, movie_id, "label")
    if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) not in (n, n - 1):
        raise MegaPipeError(f"movie {movie_id!r}: field 'label' must be a list of {n} (or {n - 1}, "
                            f"last shot unlabelled) entries, one per shot of 'prob'")
    labelled = np.zeros(n, dtype=bool)
    gold = np.zeros(n, dtype=bool)
    for i, value in enumerate(labels):
        if value is None:
            continue
        if isinstance(value, bool) or value not in (0, 1, -1):
            raise MegaPipeError(f"movie {movie_id!r}: field 'label' entry {i} is {value!r}; "
                                "expected 0, 1, -1 or null")
        labelled[i] = True
        gold[i] = value != 0
    if not labelled.any():
        raise MegaPipeError(f"movie {movie_id!r}: no labelled shot")
    frames = _float_array(_field(record, movie_id, "shot_frames"), movie_id, "shot_frames", 2)
    if frames.shape != (n, 2):
        raise MegaPipeError(f"movie {movie_id!r}: field 'shot_frames' must be {n} "
                            f"[start_frame, end_frame] pairs, got shape {frames.shape}")
    if np.any(frames[:, 0] > frames[:, 1]):
        raise MegaPipeError(f"movie {movie_id!r}: field 'shot_frames' has a shot whose start "
                            "frame is after its end frame")
    return _SceneMovie(movie_id, prob, labelled, gold, frames)


def _is_unit(value: object, n_units: int) -> bool:
    """An integer (not a bool) index of one of ``n_units`` shots or sentences."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < n_units


def _act_movie(record: object, index: int) -> _ActMovie:
    movie_id = _movie_id(record, index)
    post = _float_array(_field(record, movie_id, "posteriors"), movie_id, "posteriors", 2)
    if post.shape[0] != N_TURNING_POINTS or post.shape[1] == 0:
        raise MegaPipeError(f"movie {movie_id!r}: field 'posteriors' must be {N_TURNING_POINTS} "
                            f"equally long non-empty lists (one per TP), got shape {post.shape}")
    n_units = post.shape[1]
    gold = _field(record, movie_id, "gold")
    if not isinstance(gold, (list, tuple)) or len(gold) != N_TURNING_POINTS:
        raise MegaPipeError(f"movie {movie_id!r}: field 'gold' must be {N_TURNING_POINTS} lists "
                            "of unit indices (one per TP)")
    sets = []
    for k, units in enumerate(gold):
        if not isinstance(units, (list, tuple)) or not all(_is_unit(u, n_units) for u in units):
            raise MegaPipeError(f"movie {movie_id!r}: field 'gold' TP{k + 1} must be a list of "
                                f"integer unit indices in [0, {n_units})")
        sets.append(frozenset(int(u) for u in units))
    scenes = record.get("shot_scenes")
    if scenes is not None:
        if not isinstance(scenes, (list, tuple)) or len(scenes) != n_units or not all(
                isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0 for c in scenes):
            raise MegaPipeError(f"movie {movie_id!r}: field 'shot_scenes' must be a list of {n_units} "
                                "non-negative integer scene indices (one per shot)")
        scenes = np.asarray(scenes, dtype=np.int64)
    prediction = record.get("prediction")
    if prediction is not None and (not isinstance(prediction, (list, tuple)) or len(prediction) != N_TURNING_POINTS
                                   or not all(_is_unit(u, n_units) for u in prediction)):
        raise MegaPipeError(f"movie {movie_id!r}: field 'prediction' must be {N_TURNING_POINTS} integer unit "
                            f"indices in [0, {n_units})")
    return _ActMovie(movie_id, post, sets, scenes, None if prediction is None else [int(u) for u in prediction])


def _parse_all(records: Iterable[object], parse) -> list:
    movies = [parse(record, i) for i, record in enumerate(records)]
    if not movies:
        raise MegaPipeError("no records to score")
    seen: set[str] = set()
    for movie in movies:
        if movie.movie_id in seen:
            raise MegaPipeError(f"movie {movie.movie_id!r}: more than one record")
        seen.add(movie.movie_id)
    return movies


# --------------------------------------------------------------------------- pooled scores

def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Step-wise AP = Σ (R_n − R_{n−1}) P_n over distinct score thresholds, as sklearn's
    ``average_precision_score`` (tied scores form one threshold). No positive -> 0 (BaSSL's
    ``nan_to_num``)."""
    n_pos = int(y.sum())
    if n_pos == 0:
        return 0.0
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tp = np.cumsum(y_sorted)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall_steps = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_steps * precision))


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Trapezoidal ROC AUC, computed as the Mann–Whitney statistic with average ranks for ties
    (identical to sklearn's ``roc_auc_score``). Undefined (one class only) -> 0."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.0
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = int(np.sum(y & pred))
    denominator = 2 * tp + int(np.sum(~y & pred)) + int(np.sum(y & ~pred))
    return 2 * tp / denominator if denominator else 0.0


# --------------------------------------------------------------------------- per-movie scores

def _exact_recall(movie: _SceneMovie, pred: np.ndarray) -> float:
    """sklearn ``recall_score`` on the labelled shots; no positive -> 0 (zero_division)."""
    n_gold = int(movie.gold.sum())
    return int(np.sum(movie.gold & pred)) / n_gold if n_gold else 0.0


def _recall_at_seconds(movie: _SceneMovie, pred: np.ndarray) -> float:
    """BaSSL Recall@3s: a gold boundary g is hit when a labelled shot j in [g−5, g+5] is
    predicted positive and its end frame is < 3 s (at 24 fps) from g's. One prediction may hit
    several gold boundaries. hits / (#gold + 1e−5)."""
    n = movie.prob.size
    end = movie.frames[:, 1]
    candidate = pred & movie.labelled
    gold_idx = np.flatnonzero(movie.gold)
    hits = 0
    for g in gold_idx:
        lo, hi = max(0, g - RECALL_NEIGHBOUR_SHOTS), min(n, g + RECALL_NEIGHBOUR_SHOTS + 1)
        near = np.abs(end[lo:hi] - end[g]) / FPS < RECALL_SECONDS
        hits += bool(np.any(candidate[lo:hi] & near))
    return hits / (gold_idx.size + RECALL_EPS)


def _scene_intervals(movie: _SceneMovie, boundary: np.ndarray) -> np.ndarray | None:
    """BaSSL ``get_pair_list`` + ``get_scene_list``: walk the labelled shots in order, close a
    scene at every boundary shot (inclusive); shots after the last boundary are dropped. Returns
    (n_scenes, 2) [start_frame of the first shot, end_frame of the last], or None when there is
    no boundary at all."""
    shots = np.flatnonzero(movie.labelled)
    closing = np.flatnonzero(boundary[shots])
    if closing.size == 0:
        return None
    first = shots[np.r_[0, closing[:-1] + 1]]
    last = shots[closing]
    return np.stack([movie.frames[first, 0], movie.frames[last, 1]], axis=1)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every interval of ``a`` with every one of ``b`` (frame counts end − start, no +1);
    no overlap -> 0, which also covers BaSSL's zero-length intervals without dividing by 0."""
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0])
    inter = np.maximum(inter, 0.0)
    union = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def _miou(movie: _SceneMovie, pred: np.ndarray) -> float | None:
    """BaSSL mIoU of one movie: mean of (gold scenes' best IoU with a predicted scene) and
    (predicted scenes' best IoU with a gold scene). None = no gold boundary (skipped); no
    predicted boundary -> 0."""
    gold_scenes = _scene_intervals(movie, movie.gold)
    if gold_scenes is None:
        return None
    pred_scenes = _scene_intervals(movie, pred)
    if pred_scenes is None:
        return 0.0
    iou = _iou_matrix(gold_scenes, pred_scenes)
    return float((iou.max(axis=1).mean() + iou.max(axis=0).mean()) / 2.0)


# --------------------------------------------------------------------------- public API

def scene_metrics(records: Sequence[dict]) -> dict:
    """Scene-boundary metrics as BaSSL computes them (its MovieNetMetric and sklearn metrics).

    Returns fractions in [0, 1]:

    - ``ap``: average precision pooled over all labelled shots of all movies (one ranking).
    - ``f1``: F1 of the boundary class with ``prob >= 0.5``, pooled (torchmetrics semantics).
    - ``auc``: ROC AUC, pooled.
    - ``recall``: per movie TP/(TP+FN) with hard predictions ``prob > 0.5`` (argmax, a tie goes
      to "no boundary"), averaged over movies; a movie without gold boundaries scores 0.
    - ``recall_at_3s``: BaSSL's Recall@3s, averaged over movies.
    - ``miou``: BaSSL's mIoU, averaged over the movies that have a gold boundary. BaSSL returns
      None for the *whole* metric when one movie has none; we skip such a movie instead and
      list it in ``miou_skipped`` so one unannotated movie cannot void the test set.
    - ``n_movies``, ``n_shots`` (labelled shots scored).

    Undefined pooled values (no positive, or a single class for AUC) are 0, following BaSSL's
    ``nan_to_num`` on AP.
    """
    movies: list[_SceneMovie] = _parse_all(records, _scene_movie)
    y = np.concatenate([m.gold[m.labelled] for m in movies])
    s = np.concatenate([m.prob[m.labelled] for m in movies])
    recalls, recalls_3s, mious, skipped = [], [], [], []
    for movie in movies:
        pred = movie.prob > 0.5
        recalls.append(_exact_recall(movie, pred))
        recalls_3s.append(_recall_at_seconds(movie, pred))
        miou = _miou(movie, pred)
        if miou is None:
            skipped.append(movie.movie_id)
        else:
            mious.append(miou)
    return {
        "ap": _average_precision(y, s),
        "f1": _f1(y, s >= 0.5),
        "recall": float(np.mean(recalls)),
        "recall_at_3s": float(np.mean(recalls_3s)),
        "miou": float(np.mean(mious)) if mious else 0.0,
        "auc": _roc_auc(y, s),
        "n_movies": len(movies),
        "n_shots": int(y.size),
        "miou_skipped": skipped,
    }


def tp_prediction_set(posterior: Sequence[float], n: int) -> list[int]:
    """GraphTP's predicted set S for one TP: the argmax unit and its two neighbours.

    Ties go to the highest index (GraphTP sorts (score, index) pairs in reverse). At the edges
    the window is shifted inside [0, n): argmax 0 -> {0, 1, 2}, argmax n−1 -> {n−3, n−2, n−1};
    with fewer than 3 units S is every unit.
    """
    return _window(_predicted_unit(posterior, n), n)


def _predicted_unit(posterior: Sequence[float], n: int) -> int:
    """The argmax unit of one TP posterior, ties to the highest index (GraphTP)."""
    p = np.asarray(posterior, dtype=np.float64)
    if n < 1 or p.shape != (n,):
        raise MegaPipeError(f"a TP posterior must have one value per unit (n={n}), got shape {p.shape}")
    return n - 1 - int(np.argmax(p[::-1]))


def _window(best: int, n: int) -> list[int]:
    """GraphTP's S around unit ``best`` of ``n``: {best−1, best, best+1} shifted inside [0, n)."""
    if n < 3:
        return list(range(n))
    centre = min(max(best, 1), n - 2)
    return [centre - 1, centre, centre + 1]


def _graphtp_scores(events: Sequence[Sequence[tuple[set[int], frozenset[int], int]]]) -> dict:
    """GraphTP ``evaluate_tps`` over movies; ``events[i]`` = the 5 (S, G, N) of movie i."""
    hit_units = gold_units = hit_events = 0
    distances, movie_ious = [], []
    for movie in events:
        ious = []
        for predicted, gold, n_units in movie:
            overlap = len(gold & predicted)
            hit_units += overlap
            gold_units += len(gold)
            hit_events += overlap > 0
            nearest = min((abs(g - s) for g in gold for s in predicted),
                          default=GRAPHTP_NO_GOLD_DISTANCE)
            distances.append(nearest / n_units)
            ious.append(overlap / len(gold | predicted))
        movie_ious.append(np.mean(ious))
    return {
        "ta": hit_units / gold_units if gold_units else 0.0,
        "pa": hit_events / (len(events) * N_TURNING_POINTS),
        "d": float(np.mean(distances)),
        "ta_iou": float(np.mean(movie_ious)),
        "n_movies": len(events),
    }


def _scene_events(movie: _ActMovie) -> list[tuple[set[int], frozenset[int], int]]:
    """Scene-level (S, G, N) of one movie's 5 TPs (GraphTP's protocol): the predicted
    shot's scene and its neighbours among N = max scene index + 1 scenes; G = the gold shots'
    scenes."""
    scenes = movie.shot_scenes
    n_scenes = int(scenes.max()) + 1
    n_shots = movie.posteriors.shape[1]
    return [(set(_window(int(scenes[_predicted_unit(p, n_shots)]), n_scenes)),
             frozenset(int(scenes[g]) for g in gold), n_scenes)
            for p, gold in zip(movie.posteriors, movie.gold)]


def act_metrics(records: Sequence[dict]) -> dict:
    """Turning-point metrics TA/PA/D exactly as GraphTP's ``evaluate_tps`` computes them.

    With S from :func:`tp_prediction_set` and G the gold units of (movie, TP):

    - ``ta``: Σ|G∩S| / Σ|G| over all movies and TPs (micro recall of gold units); 0 if no gold.
    - ``pa``: #(movie, TP) with G∩S ≠ ∅, divided by #movies × 5.
    - ``d``: mean over (movie, TP) of min |g − s| / N. A TP with an empty G gets GraphTP's
      initial distance 10000 / N (so ``d`` can exceed 1; it "explodes" as in GraphTP).
    - ``ta_iou``: the third-party "paper" variant, |S∩G| / |S∪G| averaged over TPs then movies.
    - ``n_movies``.
    - When records carry ``shot_scenes``: ``scene_ta``, ``scene_pa``, ``scene_d``,
      ``scene_ta_iou`` (the same definitions on screenplay scenes, GraphTP's protocol: the
      predicted shot mapped to its scene, G = the gold shots' scenes, N = the movie's number of
      scenes) and ``scene_n_movies``, over the records that carry the map. These are the numbers
      comparable with the GraphTP/MEGA tables (MEGA Tab. 3); the shot-level ones are not.

    G is a set: a unit listed twice counts once.
    """
    movies: list[_ActMovie] = _parse_all(records, _act_movie)
    result = _graphtp_scores([
        [(set(tp_prediction_set(p, movie.posteriors.shape[1])), gold, movie.posteriors.shape[1])
         for p, gold in zip(movie.posteriors, movie.gold)]
        for movie in movies
    ])
    mapped = [movie for movie in movies if movie.shot_scenes is not None]
    if mapped:
        scene = _graphtp_scores([_scene_events(movie) for movie in mapped])
        result.update({f"scene_{k}": v for k, v in scene.items()})
    return result


#: ``eval`` and ``segment`` warn when at least this fraction of the TP distributions is flat.
FLAT_WARNING = 0.5


def flat_fraction(records: Sequence[dict], tolerance: float = 1e-4) -> float:
    """The fraction of (record, TP) posteriors that are **flat**: entropy within ``tolerance``
    nats of log N, N ≥ 2 the shots or sentences (a spread of the logits of about 0.01 or less).
    A flat posterior's argmax picks among near-equal scores; it is not evidence — what a
    collapsed shot model gives (docs/training.md, "The paper's model in this setting"). 0.0 when
    there is nothing to judge."""
    flat = total = 0
    for record in records:
        for posterior in np.asarray(record["posteriors"], dtype=np.float64):
            if len(posterior) < 2:
                continue
            p = posterior[posterior > 0]
            flat += np.log(len(posterior)) + float((p * np.log(p)).sum()) <= tolerance
            total += 1
    return flat / total if total else 0.0


def synopsis_prediction(posterior: Sequence[float], distance_weight: float = 0.0) -> int:
    """The predicted TP sentence. ``distance_weight`` λ = 0: the argmax of the posterior (a tie
    goes to the first). λ > 0: the **minimum-Bayes-risk** choice for TRIPOD's two scores at
    once, argmax_p P(p) − λ · Σ_j P(j) |p − j| / N — the chance of an exact hit (TA) minus λ
    times the expected distance (D) under the posterior; a large λ tends to the posterior's
    median (docs/training.md, "Decoding")."""
    post = np.asarray(posterior, dtype=np.float64)
    if distance_weight <= 0:
        return int(np.argmax(post))
    n = len(post)
    j = np.arange(n)
    expected = np.abs(j[:, None] - j[None, :]) @ post / n
    return int(np.argmax(post - distance_weight * expected))


def synopsis_metrics(records: Sequence[dict]) -> dict:
    """Sentence-level turning-point metrics of TRIPOD (Papalampidi et al., EMNLP 2019; see
    docs/training.md "Synopsis task" for the sources and what could not be verified).

    Records are act records over **sentences** (``posteriors`` 5 × N_sentences, ``gold`` the
    annotated sentence indices per TP; several annotators give several). The prediction for
    (movie, TP) is the single sentence p of the record's ``prediction`` (5 sentence indices,
    the model's decision rule, :func:`synopsis_prediction`), or without one the argmax — no ±1 window,
    which is what separates these from GraphTP's scene-level :func:`act_metrics`. With G the
    gold sentences of (movie, TP), over the (movie, TP) events that have gold:

    - ``ta``: Σ|G ∩ {p}| / Σ|G|, the fraction of gold TP sentences identified (with one
      annotator per movie: the fraction of TPs whose sentence is exactly right);
    - ``pa``: the fraction of events with p ∈ G (at least one gold sentence identified);
    - ``d``: the mean of min_{g∈G} |p − g| / N, the distance to the nearest gold sentence as a
      fraction of the synopsis length N;
    - ``n_movies``, ``n_events`` (events scored; a TP without gold is left out of all three).
    """
    movies: list[_ActMovie] = _parse_all(records, _act_movie)
    hit_sentences = gold_sentences = hit_events = 0
    distances = []
    for movie in movies:
        n = movie.posteriors.shape[1]
        for k, (posterior, gold) in enumerate(zip(movie.posteriors, movie.gold)):
            if not gold:
                continue
            p = synopsis_prediction(posterior) if movie.prediction is None else movie.prediction[k]
            hit = p in gold
            hit_sentences += hit
            gold_sentences += len(gold)
            hit_events += hit
            distances.append(min(abs(p - g) for g in gold) / n)
    if not distances:
        raise MegaPipeError("no turning point with gold sentences to score")
    return {
        "ta": hit_sentences / gold_sentences,
        "pa": hit_events / len(distances),
        "d": float(np.mean(distances)),
        "n_movies": len(movies),
        "n_events": len(distances),
    }


def score_records(task: str, records: Iterable[dict]) -> dict:
    """Validate and score prediction records: ``task`` "scene" -> :func:`scene_metrics`, "act"
    -> :func:`act_metrics`, "synopsis" -> :func:`synopsis_metrics`. A malformed record raises
    MegaPipeError naming the movie and field."""
    scorers = {"scene": scene_metrics, "act": act_metrics, "synopsis": synopsis_metrics}
    if task not in scorers:
        raise MegaPipeError(f"unknown task {task!r}; expected 'scene', 'act' or 'synopsis'")
    return scorers[task](list(records))


def read_records(path: str | os.PathLike) -> list[dict]:
    """Read prediction records from JSONL (one JSON object per line; blank lines ignored)."""
    return [record for _, record in read_jsonl(path, "records")]
