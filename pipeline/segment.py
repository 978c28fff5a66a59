"""``mega-pipe segment``: a movie in, ``boundaries.json`` out (schema: docs/boundaries.md).

It runs ``extract`` for the modalities the checkpoints need (cached features are reused), then the
scene model (a boundary probability per shot; a scene ends at every shot whose probability is
≥ the threshold) and the act model (five turning-point distributions over shots, decoded jointly
so that TP1 < TP2 < … < TP5, which delimit the six acts). Without a checkpoint the scenes come
from shot coherence and the turning points from TRIPOD's position prior, snapped to scene
starts (``mega_pipe.model.unsupervised``, docs/unsupervised.md).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.features import FeatureFolder

BOUNDARIES_SCHEMA = "mega-pipe/boundaries"
BOUNDARIES_VERSION = 2     # v2: "methods" (docs/boundaries.md); every v1 field unchanged
TURNING_POINTS = ("Opportunity", "Change of Plans", "Point of No Return", "Major Setback", "Climax")
ACTS = ("Setup", "New Situation", "Progress", "Complications and Higher Stakes", "Final Push",
        "Aftermath")


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


def build_boundaries(manifest: dict, features: Path, shots: dict, scene: dict | None,
                     act: dict | None, missing: list[str], threshold: float) -> dict:
    starts, ends = shots["start_s"], shots["end_s"]
    doc = {
        "schema": BOUNDARIES_SCHEMA,
        "version": BOUNDARIES_VERSION,
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


def check_dims(ckpt, features: Path, which: str) -> None:
    """Refuse features whose dimensions differ from the checkpoint's, saying what to do: the
    ``--models`` set that gives the checkpoint's dimensions, or else the synthetic set that
    matches the movie's features (to train a checkpoint that fits them)."""
    from mega_pipe.extractors.registry import MODALITIES, MODEL_SETS, entry_for
    from mega_pipe.manifests.synth import format_modalities

    meta = FeatureFolder(features).modality_meta()
    want = dict(ckpt.model.modality_dims)
    wrong = [m for m in want if meta.get(m, {}).get("dim") not in (None, want[m])]
    if not wrong:
        return
    sets = [s for s in MODEL_SETS
            if all(m in MODALITIES and entry_for(s, m).dim == d for m, d in want.items())]
    if sets:
        advice = f"extract with --models {sets[0]}"
    else:
        have = format_modalities({m: v["dim"] for m, v in meta.items()})
        advice = ("no model set gives the checkpoint's dimensions: train one on features like the "
                  f"movie's, e.g. `mega-pipe manifest synth OUT --modalities {have}`")
    raise MegaPipeError(
        f"{which} checkpoint expects {format_modalities({m: want[m] for m in wrong})} but the "
        f"movie's features are {format_modalities({m: meta[m]['dim'] for m in wrong})} "
        f"(model {', '.join(str(meta[m].get('model_id')) for m in wrong)}): {advice}")


def missing_modalities(ckpts: dict, features: Path) -> list[str]:
    """One ``missing`` line per checkpoint modality the movie lacks (predicted without it)."""
    folder = FeatureFolder(features)
    have, absent = folder.modalities(), folder.absent_modalities()
    wanted = dict.fromkeys(m for c in ckpts.values() for m in c.modalities)
    return [f"{m}: {absent.get(m, 'not in the feature folder')}; predicted without it"
            for m in wanted if m not in have]


def _unsupervised_scenes(features: Path, n_scenes: int | None, missing: list[str]) -> dict | None:
    """Scenes without a checkpoint: shot coherence (docs/unsupervised.md); None with < 2 shots."""
    from mega_pipe.model.unsupervised import (
        DEFAULT_WINDOW,
        SCENE_METHOD,
        coherence_scenes,
        folder_features,
    )

    feats = folder_features(features)
    n = FeatureFolder(features).n_shots()
    if n < 2 or not feats:
        missing.append(f"scenes: {'only 1 shot' if n < 2 else 'no modality to compare shots'}")
        return None
    got = coherence_scenes(feats, n_scenes)
    return {"prob": got["prob"], "ends": got["ends"], "threshold": None if n_scenes else 0.5,
            "method": {"name": SCENE_METHOD, "scenes": n_scenes or "auto",
                       "window": DEFAULT_WINDOW, "modalities": list(feats)}}


def _prior_turning_points(shots: dict, scene: dict | None, threshold: float) -> dict:
    """Turning points without a checkpoint: TRIPOD's position prior over shot index, restricted
    to scene starts when there are at least five scenes (docs/unsupervised.md)."""
    from mega_pipe.model.prior import tp_prior
    from mega_pipe.model.unsupervised import ACT_METHOD, snap_to_scenes

    post = tp_prior(shots["start_s"], shots["end_s"], by="index")
    ends = None
    if scene is not None:
        ends = scene.get("ends") or [b for _, b, _ in scenes_from_probabilities(
            scene["prob"], threshold)]
    snapped = ends is not None and len(ends) >= 5
    if snapped:
        post = snap_to_scenes(post, ends)
    return {"posteriors": post,
            "method": {"name": ACT_METHOD, "position": "shot index",
                       "snapped_to_scenes": snapped}}


def finite_json(o):
    """JSON has no NaN/Infinity: replace them with null so every JSON reader accepts the file."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite_json(v) for k, v in o.items()}
    if isinstance(o, list):
        return [finite_json(v) for v in o]
    return o


def load_checkpoints(scene: Path | None, act: Path | None, device: str = "auto") -> dict:
    """The checkpoints given, by task, each checked to be of its task."""
    from mega_pipe.model.predict import load_checkpoint

    ckpts = {}
    for task, path in (("scene", scene), ("act", act)):
        if path is not None:       # without one: model/unsupervised.py (docs/unsupervised.md)
            ckpts[task] = load_checkpoint(path, device=device)
            if ckpts[task].task != task:
                raise MegaPipeError(f"--{task}-checkpoint {path} is a {ckpts[task].task} checkpoint")
    return ckpts


def predict_boundaries(manifest: dict, features: Path, ckpts: dict, threshold: float,
                       n_scenes: int | None = None, paths: dict | None = None) -> dict:
    """The ``boundaries.json`` document of one extracted movie (``manifest``: its extract
    manifest, ``features``: its feature folder), without its provenance. A part without a
    checkpoint comes from the checkpoint-free methods; ``n_scenes`` forces the scene count;
    ``paths``: the checkpoint files, by task, recorded in ``methods``."""
    from mega_pipe.model.predict import predict_act, predict_scene

    if n_scenes is not None and n_scenes < 1:
        raise MegaPipeError(f"--scenes must be at least 1, got {n_scenes}")
    paths = paths or {}
    shots = {k: v.tolist() for k, v in FeatureFolder(features).read_shot_times().items()}
    missing = missing_modalities(ckpts, features)
    n_shots = len(shots["start_s"])
    if "scene" in ckpts:
        check_dims(ckpts["scene"], features, "scene")
        scene = {"prob": predict_scene(ckpts["scene"], features),
                 "method": {"name": "checkpoint", "checkpoint": str(paths.get("scene")),
                            "scenes": n_scenes or "threshold"}}
        if n_scenes is not None:      # the N−1 most probable boundaries
            k = min(n_scenes, n_shots) - 1
            cuts = sorted(int(i) for i in np.argsort(-scene["prob"][:-1], kind="stable")[:k])
            scene.update(ends=cuts + [n_shots - 1], threshold=None)
    else:
        scene = _unsupervised_scenes(features, n_scenes, missing)
    if n_shots < len(ACTS):            # each act needs a shot of its own
        act = None
        missing.append(f"acts: only {n_shots} shot{'' if n_shots == 1 else 's'}; the five "
                       f"turning points and six acts need at least {len(ACTS)}")
    elif "act" in ckpts:
        check_dims(ckpts["act"], features, "act")
        act = {"posteriors": np.asarray(predict_act(ckpts["act"], features)),
               "method": {"name": "checkpoint", "checkpoint": str(paths.get("act"))}}
    else:
        act = _prior_turning_points(shots, scene, threshold)
    return build_boundaries(manifest, features, shots, scene, act, missing, threshold)
