"""Moment-retrieval metrics, as the datasets' official evaluations define them (docs/moments.md).

**QVHighlights** (the moment-retrieval part of its standalone evaluation; our own code, written
from the rules below, which docs/moments.md spells out with worked examples):

- A submission line is ``{"qid", "query", "vid", "pred_relevant_windows": [[st, ed, score], ...]}``;
  the ground truth line is ``{"qid", "query", "vid", "duration", "relevant_windows": [[st, ed],
  ...]}`` (one or more windows). The qids of both must be the same set.
- **mAP**: per query, the *first 10* predicted windows *as submitted* are kept, then ordered by
  score, highest first; equal scores keep their submitted order (a stable sort). Walking down that
  list, a prediction is a true positive at IoU threshold ``t`` when, among the ground-truth
  windows with IoU >= ``t`` (tried from the highest IoU down; equal IoUs: the later window
  first), one is not yet taken by an earlier prediction; it takes that window. Otherwise it is a
  false positive. Precision and recall (over the number of ground-truth windows) after each
  prediction give the all-point interpolated AP (VOC 2011 rule: precision made monotone from the
  right, summed over the recall steps; not the 11-point rule). mAP@t is the mean AP over queries;
  thresholds are 0.50, 0.55, ..., 0.95, and ``mAP`` is the mean over the ten (computed before
  rounding). IoU = intersection / (len_a + len_b - intersection).
- **R1@t**: the *first submitted* window of each query (its score is not looked at), against the
  ground-truth window with the highest IoU with it (the first such window on ties); that IoU is
  computed as intersection / (max(ends) - min(starts)) (the span of both windows; equal to the
  union whenever they overlap, and the IoU is 0 when they do not). R1@t is the percentage of
  queries with IoU >= t.
- Every value is a percentage rounded to 2 decimals. Length buckets: ``short`` (0, 10] s,
  ``middle`` (10, 30] s, ``long`` (30, 150] s keep the ground-truth windows of that length and the
  queries that still have one; ``full`` is every query.

**Charades-STA** (one ground-truth window per query): R1@0.5 and R1@0.7 are the percentage of
queries whose top-1 window (the highest score; the first submitted on ties) has IoU >= t with the
ground truth, mIoU the mean of that IoU, in percent.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..manifests.errors import MegaPipeError

AP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))    # 0.5, 0.55, ..., 0.95
MAX_PRED_WINDOWS = 10
LENGTH_BUCKETS = {"short": (0.0, 10.0), "middle": (10.0, 30.0), "long": (30.0, 150.0)}


def _pct(x: float) -> float:
    """A fraction as a percentage rounded to 2 decimals (the official output format)."""
    return float(f"{100 * x:.2f}")


# -- IoU -----------------------------------------------------------------------------------------
def iou_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of every window of ``a`` (N, 2) with every window of ``b`` (M, 2):
    intersection / (len_a + len_b - intersection)."""
    a, b = np.asarray(a, float).reshape(-1, 2), np.asarray(b, float).reshape(-1, 2)
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]),
                    0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def iou_span(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of paired windows (N, 2), intersection over the span max(ends) - min(starts)
    (the R1 rule; a zero span gives 0)."""
    a, b = np.asarray(a, float).reshape(-1, 2), np.asarray(b, float).reshape(-1, 2)
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    span = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, span, out=np.zeros_like(inter), where=span != 0)


# -- AP of one query ---------------------------------------------------------------------------------
def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP: precision padded with 0 at both ends and recall with 0 and 1,
    precision made non-increasing from the right, summed over the points where recall changes."""
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def query_ap(gt_windows: Sequence, pred_windows: Sequence, thresholds=AP_THRESHOLDS) -> np.ndarray:
    """AP of one query at each IoU threshold. ``pred_windows``: ``[[st, ed, score], ...]`` already
    truncated; they are ordered here by score (stable). Greedy matching as the module docstring
    says."""
    ap = np.zeros(len(thresholds))
    if len(pred_windows) == 0:
        return ap
    preds = sorted(pred_windows, key=lambda w: -w[2])              # stable: ties keep their order
    gts = np.asarray(gt_windows, float).reshape(-1, 2)
    taken = np.zeros((len(thresholds), len(gts)), bool)
    tp = np.zeros((len(thresholds), len(preds)))
    for i, w in enumerate(preds):
        ious = iou_cross(np.array([w[:2]], float), gts)[0]
        order = np.argsort(ious, kind="stable")[::-1]                # highest IoU first
        for k, t in enumerate(thresholds):
            for j in order:
                if ious[j] < t:
                    break
                if not taken[k, j]:
                    taken[k, j] = True
                    tp[k, i] = 1
                    break
    tp_cum = np.cumsum(tp, axis=1)
    fp_cum = np.cumsum(1 - tp, axis=1)
    recall = tp_cum / float(len(gts))
    precision = tp_cum / (tp_cum + fp_cum)
    return np.array([interpolated_ap(precision[k], recall[k]) for k in range(len(thresholds))])


# -- QVHighlights ----------------------------------------------------------------------------------
def _index(records: Sequence[Mapping], key: str, what: str) -> dict:
    out: dict = {}
    for r in records:
        if "qid" not in r or key not in r:
            raise MegaPipeError(f"{what}: every line needs 'qid' and '{key}' (got keys {sorted(r)})")
        if r["qid"] in out:
            raise MegaPipeError(f"{what}: qid {r['qid']!r} appears twice")
        out[r["qid"]] = r[key]
    return out


def _check_windows(qid, windows, with_score: bool, what: str) -> None:
    width = 3 if with_score else 2
    for w in windows:
        if not isinstance(w, (list, tuple)) or len(w) < width:
            raise MegaPipeError(f"{what}: qid {qid!r}: a window must be [start, end"
                                f"{', score' if with_score else ''}], got {w!r}")


def qvhighlights_scores(predictions: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> dict:
    """The moment-retrieval metrics of QVHighlights' evaluation: ``brief`` (``MR-full-R1@0.5``,
    ``MR-full-R1@0.7``, ``MR-full-mAP``, ``MR-full-mAP@0.5``, ``MR-full-mAP@0.75``,
    ``MR-short-mAP``, ``MR-middle-mAP``, ``MR-long-mAP``) and, per bucket, every threshold."""
    pred = _index(predictions, "pred_relevant_windows", "predictions")
    gt = _index(ground_truth, "relevant_windows", "ground truth")
    if set(pred) != set(gt):
        missing, extra = set(gt) - set(pred), set(pred) - set(gt)
        raise MegaPipeError(f"predictions and ground truth must have the same qids: {len(missing)} "
                            f"without a prediction (e.g. {sorted(map(str, missing))[:3]}), {len(extra)} "
                            f"not in the ground truth (e.g. {sorted(map(str, extra))[:3]})")
    for q in gt:
        _check_windows(q, gt[q], False, "ground truth")
        _check_windows(q, pred[q], True, "predictions")
        if not gt[q]:
            raise MegaPipeError(f"ground truth: qid {q!r} has no relevant window")
        if not pred[q]:
            raise MegaPipeError(f"predictions: qid {q!r} has no predicted window")
    if not gt:
        raise MegaPipeError("no queries to score")
    buckets = {name: _bucket(gt, lo, hi) for name, (lo, hi) in LENGTH_BUCKETS.items()}
    buckets["full"] = gt
    out: dict = {}
    for name, sub in buckets.items():
        out[name] = {"MR-mAP": _map(pred, sub), "MR-R1": _r1(pred, sub)} if sub else None
    brief = {"MR-full-R1@0.5": out["full"]["MR-R1"]["0.5"], "MR-full-R1@0.7": out["full"]["MR-R1"]["0.7"],
             "MR-full-mAP": out["full"]["MR-mAP"]["average"],
             "MR-full-mAP@0.5": out["full"]["MR-mAP"]["0.5"],
             "MR-full-mAP@0.75": out["full"]["MR-mAP"]["0.75"]}
    for name in LENGTH_BUCKETS:
        brief[f"MR-{name}-mAP"] = out[name]["MR-mAP"]["average"] if out[name] else None
    return {"brief": dict(sorted(brief.items())), **out}


def _bucket(gt: dict, lo: float, hi: float) -> dict:
    """Queries keeping only their ground-truth windows with lo < length <= hi (those left with
    none are dropped)."""
    out = {}
    for q, windows in gt.items():
        kept = [w for w in windows if lo < w[1] - w[0] <= hi]
        if kept:
            out[q] = kept
    return out


def _map(pred: dict, gt: dict) -> dict:
    aps = np.array([query_ap(gt[q], [w[:3] for w in pred[q][:MAX_PRED_WINDOWS]]) for q in gt])
    per_t = aps.mean(axis=0)
    out = {str(t): _pct(v) for t, v in zip(AP_THRESHOLDS, per_t)}
    out["average"] = _pct(float(np.mean(per_t)))
    return out


def _r1(pred: dict, gt: dict) -> dict:
    qids = list(gt)
    top = np.array([pred[q][0][:2] for q in qids], float)
    best = []
    for q, w in zip(qids, top):
        windows = np.asarray(gt[q], float).reshape(-1, 2)
        best.append(windows[int(np.argmax(iou_cross(w[None], windows)[0]))])
    ious = iou_span(top, np.array(best))
    return {str(t): _pct(float(np.mean(ious >= t))) for t in AP_THRESHOLDS}


# -- Charades-STA --------------------------------------------------------------------------------------
def charades_scores(predictions: Sequence[Mapping], ground_truth: Sequence[Mapping]) -> dict:
    """R1@0.5, R1@0.7 and mIoU (percent) of the top-scored window against the single ground-truth
    window (the first of ``relevant_windows``: Charades-STA has one per query)."""
    pred = _index(predictions, "pred_relevant_windows", "predictions")
    gt = _index(ground_truth, "relevant_windows", "ground truth")
    if set(pred) != set(gt) or not gt:
        raise MegaPipeError(f"predictions and ground truth must have the same (non-empty) qids "
                            f"({len(set(gt) - set(pred))} without a prediction, "
                            f"{len(set(pred) - set(gt))} not in the ground truth)")
    ious = []
    for q in gt:
        _check_windows(q, pred[q], True, "predictions")
        if not pred[q] or not gt[q]:
            raise MegaPipeError(f"qid {q!r}: no predicted or no ground-truth window")
        top = max(enumerate(pred[q]), key=lambda iw: (iw[1][2], -iw[0]))[1]
        ious.append(iou_cross(np.array([top[:2]], float), np.array([gt[q][0][:2]], float))[0, 0])
    ious_a = np.array(ious)
    return {"R1@0.5": _pct(float(np.mean(ious_a >= 0.5))), "R1@0.7": _pct(float(np.mean(ious_a >= 0.7))),
            "mIoU": _pct(float(np.mean(ious_a)))}


def moment_scores(predictions: Sequence[Mapping], ground_truth: Sequence[Mapping],
                  protocol: str = "qvhighlights") -> dict:
    """``qvhighlights`` or ``charades`` metrics."""
    if protocol == "qvhighlights":
        return qvhighlights_scores(predictions, ground_truth)
    if protocol == "charades":
        return charades_scores(predictions, ground_truth)
    raise MegaPipeError(f"unknown moment protocol {protocol!r}; choose qvhighlights or charades")
