"""``mega-pipe segment``: a movie in, ``boundaries.json`` out (schema: docs/boundaries.md).

It runs ``extract`` for the modalities the checkpoints need (cached features are reused), then the
scene model (a boundary probability per shot; a scene ends at every shot whose probability is
≥ the threshold) and the act model (five turning-point distributions over shots, decoded jointly
so that TP1 < TP2 < … < TP5, which delimit the six acts).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.features import FeatureFolder

BOUNDARIES_SCHEMA = "mega-pipe/boundaries"
BOUNDARIES_VERSION = 1
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
        "provenance": {},
    }
    if scene is not None:
        prob = scene["prob"]
        doc["scene_boundary_prob"] = [round(float(p), 6) for p in prob]
        doc["scenes"] = [
            {"index": k, "first_shot": a, "last_shot": b, "start_s": starts[a], "end_s": ends[b],
             "confidence": round(c, 6)}
            for k, (a, b, c) in enumerate(scenes_from_probabilities(prob, threshold))]
        doc["scene_threshold"] = threshold
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


def finite_json(o):
    """JSON has no NaN/Infinity: replace them with null so every JSON reader accepts the file."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite_json(v) for k, v in o.items()}
    if isinstance(o, list):
        return [finite_json(v) for v in o]
    return o


def load_checkpoints(scene: Path | None, act: Path | None, device: str = "auto"
                     ) -> tuple[dict, list[str]]:
    """The checkpoints given, by task, checked to be of their task; and one ``missing`` line per
    task without a checkpoint."""
    from mega_pipe.model.predict import load_checkpoint

    ckpts, missing = {}, []
    for task, path in (("scene", scene), ("act", act)):
        if path is None:
            missing.append(f"{'scenes' if task == 'scene' else 'turning points and acts'}: "
                           f"no --{task}-checkpoint given")
        else:
            ckpts[task] = load_checkpoint(path, device=device)
            if ckpts[task].task != task:
                raise MegaPipeError(f"--{task}-checkpoint {path} is a {ckpts[task].task} checkpoint")
    return ckpts, missing


def predict_boundaries(manifest: dict, features: Path, ckpts: dict, missing: list[str],
                       threshold: float) -> dict:
    """The ``boundaries.json`` document of one extracted movie (``manifest``: its extract
    manifest, ``features``: its feature folder), without its provenance."""
    from mega_pipe.model.predict import predict_act, predict_scene

    shots = {k: v.tolist() for k, v in FeatureFolder(features).read_shot_times().items()}
    scene = act = None
    missing = missing + missing_modalities(ckpts, features)
    if "scene" in ckpts:
        check_dims(ckpts["scene"], features, "scene")
        scene = {"prob": predict_scene(ckpts["scene"], features)}
    if "act" in ckpts:
        check_dims(ckpts["act"], features, "act")
        if len(shots["start_s"]) < 6:
            missing.append(f"acts: only {len(shots['start_s'])} shots, fewer than six acts")
        act = {"posteriors": np.asarray(predict_act(ckpts["act"], features))}
    return build_boundaries(manifest, features, shots, scene, act, missing, threshold)
