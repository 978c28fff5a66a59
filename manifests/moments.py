"""Moment-retrieval annotations and datasets (docs/moments.md): readers, the Charades-STA
converter, the moment dataset description and the planted moment generator.

**Annotations** are QVHighlights' public JSON Lines layout, one query per line:
``{"qid", "query", "vid", "duration", "relevant_windows": [[start_s, end_s], ...]}``. Charades-STA's
text layout (``VID START END##sentence`` per line, durations from ``Charades_v1_*.csv``) is
converted into it by :func:`convert_charades`.

**A moment dataset** (``moments.json``, what ``train --task moment --manifest`` reads) names the
annotation file of each split, where the features are and the clip length::

    {"format": "mega-pipe-moments/1", "protocol": "qvhighlights", "clip_len": 2,
     "splits": {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"},
     "video_features": "video_features",  # <vid>.npz, "features": (n_clips, D): released files
     "text_features": "text_features"}    # qid<qid>.npz: "last_hidden_state" (T, D),
                                          #   "pooler_output" (D,), optional "token_ids" (T,)

or, instead of ``video_features``/``text_features``, ``"feature_folders": "OUT"``: our own feature
folders (``OUT/<vid>/``; per-second ``clip`` vectors pooled to ``clip_len``, text encoded by the
CLIP text tower of the same weights entry; pipeline/search.py). Relative paths are relative to
the file.

**Planted moments** (:func:`write_planted`): a world of ``n_concepts`` concepts, each with an image
vector and a text vector; every video is a sequence of segments, each showing two concepts; a
query names two concepts (plus filler words) and its windows are the segments showing exactly that
pair (sometimes two: multi-window ground truth). Segments showing one of the two concepts with
another are distractors. In the ``shared`` space a concept's text vector is its image vector plus
noise (a fixed text-image similarity finds the moment); in the ``relation`` space it is the image
vector turned by a fixed random rotation, so text and image vectors of the same concept are
unrelated by cosine (only a learned map finds it). The world (concept vectors, rotation) comes from
``world_seed`` and is shared by every video, as a language is; videos, queries and noise come from
``seed`` and share nothing else.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_json, write_text
from .errors import MegaPipeError
from .jsonio import read_json, read_jsonl, read_text

MOMENTS_FORMAT = "mega-pipe-moments/1"
PROTOCOLS = ("qvhighlights", "charades")
SPLITS = ("train", "val", "test")
_EPS = 1e-6


@dataclass(frozen=True)
class MomentQuery:
    """One annotated query: windows in seconds, ``[start, end)``, inside ``[0, duration]``."""

    qid: int | str
    query: str
    vid: str
    duration: float
    windows: tuple[tuple[float, float], ...]

    def record(self) -> dict:
        return {"qid": self.qid, "query": self.query, "vid": self.vid, "duration": self.duration,
                "relevant_windows": [list(w) for w in self.windows]}


def check_query(obj: dict, origin: str, need_windows: bool = True) -> MomentQuery:
    """One annotation object as a :class:`MomentQuery`; one-line errors naming ``origin``."""
    for key in ("qid", "query", "vid", "duration") + (("relevant_windows",) if need_windows else ()):
        if key not in obj:
            raise MegaPipeError(f"{origin}: missing '{key}' (QVHighlights layout: qid, query, vid, "
                                "duration, relevant_windows)")
    query = str(obj["query"]).strip()
    if not query:
        raise MegaPipeError(f"{origin}: qid {obj['qid']!r} has an empty query")
    try:
        duration = float(obj["duration"])
    except (TypeError, ValueError):
        raise MegaPipeError(f"{origin}: duration must be a number, got {obj['duration']!r}") from None
    if not duration > 0:
        raise MegaPipeError(f"{origin}: qid {obj['qid']!r}: duration must be positive, got {duration}")
    windows = []
    for w in obj.get("relevant_windows", []) if need_windows else []:
        if not isinstance(w, (list, tuple)) or len(w) != 2:
            raise MegaPipeError(f"{origin}: qid {obj['qid']!r}: a window must be [start, end], got {w!r}")
        s, e = float(w[0]), float(w[1])
        if not (0 <= s < e <= duration + _EPS):
            raise MegaPipeError(f"{origin}: qid {obj['qid']!r}: window [{s:g}, {e:g}] lies outside the "
                                f"video [0, {duration:g}] or is empty")
        windows.append((s, e))
    if need_windows and not windows:
        raise MegaPipeError(f"{origin}: qid {obj['qid']!r} has no relevant window")
    return MomentQuery(obj["qid"], query, str(obj["vid"]), duration, tuple(windows))


def read_annotations(path: str | Path, need_windows: bool = True) -> list[MomentQuery]:
    """A QVHighlights-layout JSON Lines file, every line checked; qids must be unique."""
    out, seen = [], set()
    for lineno, obj in read_jsonl(path, "annotations"):
        q = check_query(obj, f"annotations {path}:{lineno}", need_windows)
        if q.qid in seen:
            raise MegaPipeError(f"annotations {path}:{lineno}: qid {q.qid!r} appears twice")
        seen.add(q.qid)
        out.append(q)
    if not out:
        raise MegaPipeError(f"annotations {path}: no queries")
    return out


def write_annotations(path: str | Path, queries: list[MomentQuery]) -> None:
    write_text(path, "".join(json.dumps(q.record()) + "\n" for q in queries))


# -- Charades-STA ----------------------------------------------------------------------------------
def read_charades_durations(path: str | Path) -> dict[str, float]:
    """``id`` -> ``length`` (seconds) from Charades' ``Charades_v1_train.csv``/``_test.csv``."""
    rows = list(csv.DictReader(read_text(path, "Charades csv").splitlines()))
    if not rows or "id" not in rows[0] or "length" not in rows[0]:
        raise MegaPipeError(f"Charades csv {path}: expected the columns 'id' and 'length'")
    return {r["id"]: float(r["length"]) for r in rows}


def convert_charades(sta_path: str | Path, durations: dict[str, float]) -> tuple[list[MomentQuery], int]:
    """Charades-STA lines ``VID START END##sentence`` as QVHighlights-layout queries (qid = line
    number). An end past the video's length (the annotations have a few, by fractions of a second)
    is cut to the length; returns the queries and how many ends were cut. A start at or past the
    length, or a video missing from ``durations``, is an error."""
    out, cut = [], 0
    for lineno, line in enumerate(read_text(sta_path, "Charades-STA file").splitlines(), 1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3:
            raise MegaPipeError(f"Charades-STA {sta_path}:{lineno}: expected 'VID START END##sentence'")
        vid = parts[0]
        if vid not in durations:
            raise MegaPipeError(f"Charades-STA {sta_path}:{lineno}: video {vid} has no length in the csv")
        start, end, dur = float(parts[1]), float(parts[2]), durations[vid]
        if end > dur:
            end, cut = dur, cut + 1
        obj = {"qid": lineno, "query": sentence.strip(), "vid": vid, "duration": dur,
               "relevant_windows": [[start, end]]}
        out.append(check_query(obj, f"Charades-STA {sta_path}:{lineno}"))
    if not out:
        raise MegaPipeError(f"Charades-STA {sta_path}: no queries")
    return out, cut


# -- the dataset description ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MomentDataset:
    path: Path
    protocol: str
    clip_len: float
    splits: dict[str, Path]
    video_features: Path | None
    text_features: Path | None
    feature_folders: Path | None

    def queries(self, split: str) -> list[MomentQuery]:
        if split not in self.splits:
            raise MegaPipeError(f"moment dataset {self.path}: no '{split}' split "
                                f"(it has {', '.join(self.splits)})")
        return read_annotations(self.splits[split])


def read_moment_dataset(path: str | Path) -> MomentDataset:
    path = Path(path)
    doc = read_json(path, "moment dataset", expect=dict)
    if doc.get("format") != MOMENTS_FORMAT:
        raise MegaPipeError(f"moment dataset {path}: 'format' must be {MOMENTS_FORMAT!r} "
                            "(docs/moments.md describes the file)")
    protocol = doc.get("protocol", "qvhighlights")
    if protocol not in PROTOCOLS:
        raise MegaPipeError(f"moment dataset {path}: protocol must be one of {', '.join(PROTOCOLS)}")
    clip_len = float(doc.get("clip_len", 2))
    if clip_len <= 0:
        raise MegaPipeError(f"moment dataset {path}: clip_len must be positive")
    root = path.parent

    def rel(key: str) -> Path | None:
        return (root / doc[key]) if doc.get(key) else None

    splits = {s: root / f for s, f in (doc.get("splits") or {}).items() if s in SPLITS}
    if "train" not in splits:
        raise MegaPipeError(f"moment dataset {path}: 'splits' needs at least 'train'")
    ds = MomentDataset(path, protocol, clip_len, splits, rel("video_features"), rel("text_features"),
                       rel("feature_folders"))
    if (ds.video_features is None) == (ds.feature_folders is None):
        raise MegaPipeError(f"moment dataset {path}: give either 'video_features' (+ 'text_features') "
                            "or 'feature_folders'")
    if ds.video_features is not None and ds.text_features is None:
        raise MegaPipeError(f"moment dataset {path}: 'video_features' needs 'text_features'")
    return ds


def video_feature_path(folder: Path, vid: str) -> Path:
    return folder / f"{vid}.npz"


def text_feature_path(folder: Path, qid) -> Path:
    return folder / f"qid{qid}.npz"


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise MegaPipeError(f"feature file {path}: no such file")
    try:
        with np.load(path) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise MegaPipeError(f"feature file {path}: no array {missing[0]!r} (has {', '.join(z.files)})")
            return {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as e:
        raise MegaPipeError(f"feature file {path}: not a readable .npz ({e})") from None


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


# -- planted moments -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlantedConfig:
    n_videos: int = 60
    seed: int = 0               # videos, queries, noise
    world_seed: int = 0         # the concept vectors and the text-image relation (the "language")
    space: str = "relation"     # "relation" | "shared"
    n_concepts: int = 16
    n_fillers: int = 8
    dim: int = 32
    clip_len: float = 2.0
    min_clips: int = 20
    max_clips: int = 60
    queries_per_video: tuple[int, int] = (2, 4)
    noise: float = 0.4          # per-clip noise (relative to a unit concept vector)
    text_noise: float = 0.3     # shared space: text = image vector + this much noise
    multi_window: float = 0.25  # share of queries whose pair is shown twice
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def planted_world(cfg: PlantedConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concept image vectors (K, D), concept text vectors (K, D), filler text vectors (F, D)."""
    rng = np.random.default_rng([cfg.world_seed, 7919])
    image = _unit(rng.standard_normal((cfg.n_concepts, cfg.dim)))
    if cfg.space == "shared":
        text = _unit(image + cfg.text_noise * rng.standard_normal(image.shape) / math.sqrt(cfg.dim) * 3)
    elif cfg.space == "relation":
        rotation, _ = np.linalg.qr(rng.standard_normal((cfg.dim, cfg.dim)))
        text = _unit(image @ rotation.T)
    else:
        raise MegaPipeError(f"planted space must be 'relation' or 'shared', got {cfg.space!r}")
    fillers = _unit(rng.standard_normal((cfg.n_fillers, cfg.dim)))
    return image.astype(np.float32), text.astype(np.float32), fillers.astype(np.float32)


def _planted_video(rng, cfg: PlantedConfig, image: np.ndarray, vid: str, qid0: int):
    """One video's clip vectors and its queries (as records plus word ids)."""
    n_clips = int(rng.integers(cfg.min_clips, cfg.max_clips + 1))
    bounds = [0]
    while bounds[-1] < n_clips:
        bounds.append(min(n_clips, bounds[-1] + int(rng.integers(2, 7))))
    segs = list(itertools.pairwise(bounds))
    K = cfg.n_concepts
    n_q = max(1, min(int(rng.integers(cfg.queries_per_video[0], cfg.queries_per_video[1] + 1)), len(segs) // 4))
    pairs = [tuple(int(c) for c in rng.choice(K, 2, replace=False)) for _ in range(n_q)]
    while len({frozenset(p) for p in pairs}) < len(pairs) or len({c for p in pairs for c in p}) < 2 * len(pairs):
        pairs = [tuple(int(c) for c in rng.choice(K, 2, replace=False)) for _ in range(n_q)]
    used = {c for p in pairs for c in p}
    free = [c for c in range(K) if c not in used]
    seg_ids = rng.permutation(len(segs))
    shown: list[tuple[int, int]] = [(-1, -1)] * len(segs)
    cursor = 0
    targets = []
    for a, b in pairs:
        n_win = 2 if rng.random() < cfg.multi_window else 1
        mine = [int(s) for s in seg_ids[cursor:cursor + n_win]]
        cursor += n_win
        for s in mine:
            shown[s] = (a, b)
        targets.append(mine)
    for a, b in pairs:       # distractors: one concept of the pair with an unrelated one
        for c in (a, b):
            if cursor < len(segs):
                shown[int(seg_ids[cursor])] = (c, int(rng.choice(free)))
                cursor += 1
    for s in range(len(segs)):
        if shown[s] == (-1, -1):
            a, b = rng.choice(free, 2, replace=False)
            shown[s] = (int(a), int(b))
    clips = np.zeros((n_clips, cfg.dim), np.float32)
    for (s, e), (a, b) in zip(segs, shown):
        base = image[a] + image[b]
        clips[s:e] = _unit(base + cfg.noise * math.sqrt(2) * _unit(rng.standard_normal((e - s, cfg.dim))))
    duration = n_clips * cfg.clip_len
    queries = []
    for i, ((a, b), mine) in enumerate(zip(pairs, targets)):
        words = [("c", a), ("c", b)] + [("f", int(f)) for f in rng.choice(cfg.n_fillers, int(rng.integers(1, 4)))]
        order = rng.permutation(len(words))
        words = [words[j] for j in order]
        windows = sorted((segs[s][0] * cfg.clip_len, segs[s][1] * cfg.clip_len) for s in mine)
        text = " ".join(f"concept{w}" if k == "c" else f"filler{w}" for k, w in words)
        queries.append((MomentQuery(qid0 + i, text, vid, duration, tuple(windows)), words))
    return clips, queries


def write_planted(out: str | Path, cfg: PlantedConfig) -> Path:
    """Write a planted moment dataset (moments.json, split annotations, feature files) into
    ``out``; returns the path of ``moments.json``. Splits are by video."""
    out = Path(out)
    image, text, fillers = planted_world(cfg)
    rng = np.random.default_rng([cfg.seed, 104729])
    vf, tf = out / "video_features", out / "text_features"
    vf.mkdir(parents=True, exist_ok=True)
    tf.mkdir(parents=True, exist_ok=True)
    n_train = round(cfg.split[0] * cfg.n_videos)
    n_val = round(cfg.split[1] * cfg.n_videos)
    split_of = ["train"] * n_train + ["val"] * n_val + ["test"] * (cfg.n_videos - n_train - n_val)
    per_split: dict[str, list[MomentQuery]] = {s: [] for s in SPLITS}
    qid = 0
    for v in range(cfg.n_videos):
        vid = f"s{cfg.seed}v{v:04d}"
        clips, queries = _planted_video(rng, cfg, image, vid, qid)
        qid += len(queries)
        _save_npz(video_feature_path(vf, vid), features=clips)
        for q, words in queries:
            vecs = np.stack([text[w] if k == "c" else fillers[w] for k, w in words])
            ids = np.array([w + 1 if k == "c" else cfg.n_concepts + 1 + w for k, w in words], np.int64)
            _save_npz(text_feature_path(tf, q.qid), last_hidden_state=vecs.astype(np.float32),
                      pooler_output=_unit(vecs.mean(0)).astype(np.float32), token_ids=ids)
            per_split[split_of[v]].append(q)
    for s, qs in per_split.items():
        write_annotations(out / f"{s}.jsonl", qs)
    doc = {"format": MOMENTS_FORMAT, "protocol": "qvhighlights", "clip_len": cfg.clip_len,
           "splits": {s: f"{s}.jsonl" for s in SPLITS}, "video_features": "video_features",
           "text_features": "text_features",
           "planted": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}}
    write_json(out / "moments.json", doc)
    return out / "moments.json"
