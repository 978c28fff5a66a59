"""``boundaries.json`` (docs/boundaries.md): its schema and version, the document built from a
movie's shots and its scene / act predictions, the one validated reader, and the writer.

``segment`` writes it, ``export`` and ``report`` read it; all three go through this module, so a
file one accepts the others accept too.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_json
from .errors import MegaPipeError
from .jsonio import read_json

SCHEMA = "mega-pipe/boundaries"
VERSION = 3     # v2: "methods"; v3: a checkpoint method's "model" (docs/boundaries.md)
TURNING_POINTS = ("Opportunity", "Change of Plans", "Point of No Return", "Major Setback", "Climax")
ACTS = ("Setup", "New Situation", "Progress", "Complications and Higher Stakes", "Final Push",
        "Aftermath")


# ------------------------------------------------------------------------ decoding predictions
def ordered_turning_points(posteriors: np.ndarray) -> list[int]:
    """The shots s_1 < … < s_5 maximising Σ_n log p_n(s_n) (TPs occur in this order by
    definition; independent argmaxes can cross). Exact dynamic programme, O(5·N). With fewer
    than 5 shots the order constraint is relaxed to s_1 ≤ … ≤ s_5."""
    logp = np.log(np.clip(np.asarray(posteriors, np.float64), 1e-12, None))
    n_tp, n = logp.shape
    gap = 1 if n >= n_tp else 0                # strict order needs at least one shot per TP
    best = logp[0].copy()                      # best score of TPs 1..k with TP k at shot s
    back = []
    for k in range(1, n_tp):
        # arg[s]: the best shot <= s for TP k-1 (running argmax), then shifted by ``gap``
        arg = np.zeros(n, np.int64)
        for s in range(1, n):
            arg[s] = s if best[s] > best[arg[s - 1]] else arg[s - 1]
        prev_arg = np.concatenate([np.zeros(gap, np.int64), arg[:n - gap]])
        prev_score = np.concatenate([np.full(gap, -np.inf), best[arg[:n - gap]]])
        best = prev_score + logp[k]
        back.append(prev_arg)
    s = int(np.argmax(best))
    path = [s]
    for prev_arg in reversed(back):
        s = int(prev_arg[s])
        path.append(s)
    return path[::-1]


def scenes_from_probabilities(prob: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(first_shot, last_shot, confidence): a scene ends at every shot with prob ≥ threshold;
    confidence = the probability of its closing boundary (1.0 for the movie's last scene)."""
    scenes, first = [], 0
    n = len(prob)
    for i, p in enumerate(prob):
        if p >= threshold or i == n - 1:
            scenes.append((first, i, 1.0 if i == n - 1 else float(p)))
            first = i + 1
    return scenes


# ------------------------------------------------------------------------------ the document
def build_boundaries(manifest: dict, features: Path, shots: dict, scene: dict | None,
                     act: dict | None, missing: list[str], threshold: float) -> dict:
    starts, ends = shots["start_s"], shots["end_s"]
    doc = {
        "schema": SCHEMA,
        "version": VERSION,
        "movie": {
            "id": manifest["movie_id"],
            "path": manifest["source"]["path"],
            "duration_s": manifest["timeline"]["duration_s"],
            "frames": manifest["timeline"]["frames"],
            "frame_rate": manifest["probe"]["video"]["frame_rate"],
        },
        "shots": [{"index": i, "start_s": starts[i], "end_s": ends[i],
                   "start_frame": shots["start_frame"][i], "end_frame": shots["end_frame"][i]}
                  for i in range(len(starts))],
        "scenes": None,
        "scene_boundary_prob": None,
        "turning_points": None,
        "acts": None,
        "tp_posteriors": None,
        "missing": missing,
        "methods": {"scenes": scene.get("method") if scene else None,
                    "acts": act.get("method") if act else None},
        "provenance": {},
    }
    if scene is not None:
        prob = scene["prob"]
        doc["scene_boundary_prob"] = [round(float(p), 6) for p in prob]
        if scene.get("ends") is not None:      # the method chose the scenes (count or grouping)
            firsts = [0] + [e + 1 for e in scene["ends"][:-1]]
            parts = [(a, b, 1.0 if b == len(prob) - 1 else float(prob[b]))
                     for a, b in zip(firsts, scene["ends"])]
        else:
            parts = scenes_from_probabilities(prob, threshold)
        doc["scenes"] = [
            {"index": k, "first_shot": a, "last_shot": b, "start_s": starts[a], "end_s": ends[b],
             "confidence": round(c, 6)}
            for k, (a, b, c) in enumerate(parts)]
        doc["scene_threshold"] = scene.get("threshold", threshold)
    if act is not None:
        post = act["posteriors"]
        tps = ordered_turning_points(post)
        doc["tp_posteriors"] = [[round(float(p), 6) for p in row] for row in post]
        doc["turning_points"] = [
            {"index": n + 1, "name": TURNING_POINTS[n], "shot": s, "time_s": starts[s],
             "confidence": round(float(post[n, s]), 6)} for n, s in enumerate(tps)]
        bounds = [0] + tps + [len(starts)]
        doc["acts"] = []
        for k, name in enumerate(ACTS):
            a, b = bounds[k], max(bounds[k], bounds[k + 1] - 1)
            conf = [post[j - 1, bounds[j]] for j in (k, k + 1) if 1 <= j <= 5]
            doc["acts"].append({
                "index": k + 1, "name": name, "first_shot": a, "last_shot": b,
                "start_s": starts[a], "end_s": ends[b] if bounds[k + 1] > a else starts[a],
                "confidence": round(float(min(conf)), 6)})
    return doc


def finite_json(o):
    """JSON has no NaN/Infinity: replace them with null so every JSON reader accepts the file."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite_json(v) for k, v in o.items()}
    if isinstance(o, list):
        return [finite_json(v) for v in o]
    return o


def write_boundaries(path: str | os.PathLike, doc: dict) -> None:
    """Validate ``doc`` and write it atomically, NaN/Infinity as null."""
    validate(doc, str(path))
    write_json(path, finite_json(doc))


# ------------------------------------------------------------------------------- reading
def read_boundaries(path: str | os.PathLike) -> dict:
    """Read and validate a ``boundaries.json`` (every version this mega-pipe knows)."""
    return validate(read_json(path, "boundaries file"), str(path))


def validate(doc: Any, origin: str) -> dict:
    """``doc`` if it is a boundaries document this mega-pipe can read, else one
    :class:`MegaPipeError` line naming ``origin`` and the first problem found."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise MegaPipeError(f"{origin} is not a mega-pipe boundaries file (schema {got!r}, "
                            f"expected {SCHEMA!r}: written by `mega-pipe segment`, "
                            "docs/boundaries.md)")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise MegaPipeError(f"{origin}: boundaries version {version!r} is not supported (this "
                            f"mega-pipe reads versions 1 to {VERSION}; upgrade mega-pipe)")
    try:
        _check_body(doc, origin)
    except MegaPipeError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        what = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise MegaPipeError(f"{origin}: malformed boundaries file ({what})") from None
    return doc


def _check_body(doc: dict, origin: str) -> None:
    frame_rate(doc, origin)
    shots = doc["shots"]
    if not isinstance(shots, list) or not shots:
        raise MegaPipeError(f"{origin}: no shots")
    prev_end = 0
    for i, s in enumerate(shots):
        a, b = _integer(s["start_frame"]), _integer(s["end_frame"])
        if not all(_number(s[k]) for k in ("start_s", "end_s")):
            raise TypeError(f"shot {i}: start_s/end_s must be numbers")
        if a < prev_end or b <= a:
            raise MegaPipeError(f"{origin}: shot {i} frames [{a}, {b}) overlap or are empty")
        prev_end = b
    n = len(shots)
    for level in ("scenes", "acts"):
        for seg in doc.get(level) or []:
            a, b = _integer(seg["first_shot"]), _integer(seg["last_shot"])
            if not 0 <= a <= b < n:
                raise MegaPipeError(f"{origin}: {level[:-1]} {seg.get('index')} refers to "
                                    f"shots {a}..{b} of {n}")
    for tp in doc.get("turning_points") or []:
        if not 0 <= _integer(tp["shot"]) < n:
            raise MegaPipeError(f"{origin}: turning point {tp.get('index')} is on shot "
                                f"{tp['shot']} of {n}")
    prob = doc.get("scene_boundary_prob")
    if prob is not None and (not isinstance(prob, list) or len(prob) != n):
        raise MegaPipeError(f"{origin}: scene_boundary_prob does not have one value per shot")


def frame_rate(doc: dict, origin: str) -> Fraction:
    """``movie.frame_rate`` as an exact positive fraction."""
    value = doc["movie"]["frame_rate"]
    try:
        f = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise MegaPipeError(f"{origin}: movie.frame_rate {value!r} is not a fraction like "
                            "\"30000/1001\"") from None
    if f <= 0:
        raise MegaPipeError(f"{origin}: movie.frame_rate {value!r} is not positive")
    return f


def _integer(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
