"""The training manifest: one JSON object per line, one movie per line.

::

    {"movie_id": "m001", "features": "OUT/m001", "split": "train",
     "scene_labels": [0, 0, 1, ..., null], "tp_sentences": [3, 9, [15, 16], 22, 27],
     "tp_shots": [[41], [120, 121], [300], [410], [502]], "shot_scenes": [0, 0, 0, 1, ...]}

``features`` is an ``extract`` output folder; a relative path is relative to the manifest's own
folder, so a dataset folder can be moved or shared as a whole. Every label field is optional.
``scene_labels`` has one entry per row of ``shots.parquet``: 1 = last shot of a scene, −1 =
MovieNet's ambiguous boundary (counts as 1, as in BaSSL and LGSS), 0 = not a boundary, ``null`` =
no label (left out of the loss and the metrics; MovieNet has no label for a movie's last shot).
``tp_sentences`` has 5 entries, one per turning point, each a sentence index of
``synopsis.parquet`` or a list of them (several annotators). ``tp_shots`` has 5 lists of shot
indices (shot-level gold, docs/sources.md). ``shot_scenes`` has one entry per row of
``shots.parquet``: the index (≥ 0) of the screenplay scene the shot belongs to (a shot→scene map,
e.g. from aligning the screenplay to the subtitles); with it, act evaluation also reports
GraphTP's scene-level TA/PA/D (docs/training.md). See manifests/README.md.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .atomic import atomic_path
from .errors import MegaPipeError
from .features import FeatureFolder
from .jsonio import read_jsonl

SPLITS = ("train", "val", "test")
N_TURNING_POINTS = 5
_FIELDS = ("movie_id", "features", "split", "scene_labels", "tp_sentences", "tp_shots", "shot_scenes")


@dataclass
class MovieEntry:
    """One manifest line. ``features`` is an absolute path once read; ``tp_sentences`` is always
    normalised to 5 sorted lists (a single index becomes a one-element list)."""

    movie_id: str
    features: Path
    split: str
    scene_labels: list[int | None] | None = None
    tp_sentences: list[list[int]] | None = None
    tp_shots: list[list[int]] | None = None
    shot_scenes: list[int] | None = None  # per shot, its screenplay-scene index


class _Invalid(ValueError):
    """A problem with one manifest line; the caller adds the file and line number."""


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _index_list(value: object, what: str) -> list[int]:
    if not isinstance(value, list) or not all(_is_index(v) for v in value):
        raise _Invalid(f"{what} must be a list of non-negative integers")
    return sorted(set(value))


def _tp_field(value: object, name: str, allow_single: bool) -> list[list[int]]:
    if not isinstance(value, list) or len(value) != N_TURNING_POINTS:
        raise _Invalid(f"'{name}' must have {N_TURNING_POINTS} entries, one per turning point")
    return [[v] if allow_single and _is_index(v) else _index_list(v, f"'{name}' TP{k + 1}")
            for k, v in enumerate(value)]


def _scene_labels(value: object) -> list[int | None]:
    if not isinstance(value, list) or not value:
        raise _Invalid("'scene_labels' must be a non-empty list")
    for i, v in enumerate(value):
        if v is not None and (isinstance(v, bool) or v not in (0, 1, -1)):
            raise _Invalid(f"'scene_labels' entry {i} is {v!r}; expected 0, 1, -1 or null")
    return list(value)


def _shot_scenes(value: object) -> list[int]:
    if not isinstance(value, list) or not value or not all(_is_index(v) for v in value):
        raise _Invalid("'shot_scenes' must be a non-empty list of non-negative integers (one scene index per shot)")
    return list(value)


def _entry_from_json(obj: object, base: Path) -> MovieEntry:
    """Validate one parsed line (structure only, no file access)."""
    if not isinstance(obj, dict):
        raise _Invalid("expected a JSON object")
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        raise _Invalid(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    movie_id, features, split = obj.get("movie_id"), obj.get("features"), obj.get("split")
    if not isinstance(movie_id, str) or not movie_id:
        raise _Invalid("'movie_id' must be a non-empty string")
    if not isinstance(features, str) or not features:
        raise _Invalid("'features' must be a non-empty path string")
    if split not in SPLITS:
        raise _Invalid(f"'split' is {split!r}; expected one of {', '.join(SPLITS)}")
    labels, tps, shots, scenes = (obj.get(k) for k in ("scene_labels", "tp_sentences", "tp_shots", "shot_scenes"))
    return MovieEntry(
        movie_id=movie_id,
        features=Path(os.path.normpath(base / features)),
        split=split,
        scene_labels=None if labels is None else _scene_labels(labels),
        tp_sentences=None if tps is None else _tp_field(tps, "tp_sentences", allow_single=True),
        tp_shots=None if shots is None else _tp_field(shots, "tp_shots", allow_single=False),
        shot_scenes=None if scenes is None else _shot_scenes(scenes),
    )


def _check_features(entry: MovieEntry) -> None:
    """Check the entry against its extract output folder (docs/contract.md)."""
    folder = FeatureFolder(entry.features)
    shot_labels = any(v is not None for v in (entry.scene_labels, entry.tp_shots,
                                              entry.shot_scenes))
    # A synopsis-only folder (manifest tripod --synopses-only) is fine for a movie labelled on
    # its synopsis sentences only; shot labels need shots.
    problem = folder.problem(synopsis=entry.tp_sentences is not None,
                             shots=shot_labels or entry.tp_sentences is None)
    if problem:
        raise _Invalid(problem)
    n_shots = folder.n_shots() if shot_labels else 0
    if entry.scene_labels is not None and len(entry.scene_labels) != n_shots:
        raise _Invalid(f"'scene_labels' has {len(entry.scene_labels)} entries but "
                       f"{folder.shots_path} has {n_shots} shots")
    if entry.shot_scenes is not None and len(entry.shot_scenes) != n_shots:
        raise _Invalid(f"'shot_scenes' has {len(entry.shot_scenes)} entries but "
                       f"{folder.shots_path} has {n_shots} shots")
    if entry.tp_shots is not None:
        _check_range(entry.tp_shots, n_shots, "tp_shots", f"{folder.shots_path} has {n_shots} shots")
    if entry.tp_sentences is not None:
        n_sents = folder.n_sentences()
        _check_range(entry.tp_sentences, n_sents, "tp_sentences",
                     f"{folder.synopsis_path} has {n_sents} sentences")


def _check_range(tps: list[list[int]], n: int, name: str, context: str) -> None:
    for k, indices in enumerate(tps):
        if indices and indices[-1] >= n:
            raise _Invalid(f"'{name}' TP{k + 1} index {indices[-1]} out of range: {context}")


def read_manifest(path: str | os.PathLike, *, check_features: bool = True) -> list[MovieEntry]:
    """Read and validate a manifest. Any problem raises MegaPipeError as ``FILE:LINE: what``.

    With ``check_features`` each feature folder must be a complete extract output, have one
    shot per ``scene_labels`` entry and hold every ``tp_shots`` / ``tp_sentences`` index (row
    counts come from the Parquet footers, so this stays cheap)."""
    path = Path(path)
    base = path.parent.absolute()
    entries: list[MovieEntry] = []
    first_line: dict[str, int] = {}
    for lineno, obj in read_jsonl(path, "manifest"):
        try:
            entry = _entry_from_json(obj, base)
            if entry.movie_id in first_line:
                raise _Invalid(f"movie_id {entry.movie_id!r} already on line "
                               f"{first_line[entry.movie_id]}")
            if check_features:
                _check_features(entry)
        except _Invalid as e:
            raise MegaPipeError(f"{path}:{lineno}: {e}") from None
        first_line[entry.movie_id] = lineno
        entries.append(entry)
    if not entries:
        raise MegaPipeError(f"{path}: the manifest lists no movie")
    return entries


def _entry_to_json(entry: MovieEntry, base: Path) -> dict:
    obj: dict = {
        "movie_id": entry.movie_id,
        "features": Path(os.path.relpath(Path(entry.features).absolute(), base)).as_posix(),
        "split": entry.split,
    }
    if entry.scene_labels is not None:
        obj["scene_labels"] = [None if v is None else int(v) for v in entry.scene_labels]
    if entry.tp_sentences is not None:
        obj["tp_sentences"] = [_compact_tp(v) for v in entry.tp_sentences]
    if entry.tp_shots is not None:
        obj["tp_shots"] = [[int(i) for i in v] for v in entry.tp_shots]
    if entry.shot_scenes is not None:
        obj["shot_scenes"] = [int(v) for v in entry.shot_scenes]
    return obj


def _compact_tp(value: int | Sequence[int]) -> int | list[int]:
    """A TP with one sentence is written as a plain index, as annotators usually give it."""
    if isinstance(value, int):
        return int(value)
    indices = [int(i) for i in value]
    return indices[0] if len(indices) == 1 else indices


def write_manifest(path: str | os.PathLike, entries: Iterable[MovieEntry]) -> None:
    """Validate and write ``entries`` atomically; feature paths are written relative to the
    manifest's folder. An invalid entry raises MegaPipeError naming its movie."""
    path = Path(path)
    base = path.parent.absolute()
    lines, seen = [], set()
    for entry in entries:
        obj = _entry_to_json(entry, base)
        try:
            _entry_from_json(obj, base)
        except _Invalid as e:
            raise MegaPipeError(f"manifest entry {entry.movie_id!r}: {e}") from None
        if entry.movie_id in seen:
            raise MegaPipeError(f"manifest entry {entry.movie_id!r}: duplicate movie_id")
        seen.add(entry.movie_id)
        lines.append(json.dumps(obj, ensure_ascii=False))
    if not lines:
        raise MegaPipeError(f"{path}: no movie to write")
    with atomic_path(path) as tmp:  # explicit UTF-8: movie ids may be non-ASCII titles
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
