"""MovieNet-318 scene annotations -> training manifest (scene_labels + split).

Inputs (MovieNet's ``anno_scene318`` release, docs/sources.md):

- ``label318/<imdb>.txt``: ``shot_id label`` per line for every shot except the last; label 1 =
  scene boundary after the shot, 0 = none, −1 = ambiguous boundary (counts as 1, as in BaSSL).
- ``shot_movie318/<imdb>.txt``: ``start_frame end_frame kf1 kf2 kf3`` per shot (frames at
  24 fps, end frame inclusive).
- ``split318.json``: ``{"train": [imdb, ...], "val": [...], "test": [...]}``.
- a features root with one ``extract`` output folder per imdb id.

MovieNet's labels refer to MovieNet's shots, ours come from our own shot detector. When both
shot lists have the same length the labels are copied by index. Otherwise (or with
``transfer="time"``) they are moved by time: the boundary after MovieNet shot k is the cut at
``(end_frame_k + 1) / fps`` seconds, and it marks the one of our shots whose end (a cut of
ours) is nearest to it, if that cut lies within ``tolerance_s``. Boundaries without such a cut
are dropped (our detector missed that cut) and counted; two boundaries landing on the same shot
are merged (1 wins over −1) and counted. Our last shot gets no label (``null``), like
MovieNet's own last shot: the end of the movie is not a cut, and MovieNet does not say whether
a scene ends there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import check_output_file
from .errors import MegaPipeError
from .features import FeatureFolder
from .jsonio import read_json
from .schema import SPLITS, MovieEntry, write_manifest

DEFAULT_FPS = 24.0          # MovieNet's frame numbers assume 24 fps (docs/sources.md)
DEFAULT_TOLERANCE_S = 1.0   # how far our cut may be from MovieNet's and still carry its label
TRANSFERS = ("auto", "index", "time")
# A timeline-length mismatch above this (seconds, or fraction of the duration) is reported:
# it usually means a different cut of the movie or a frame rate other than --fps.
_DURATION_SLACK_S = 5.0
_DURATION_SLACK_FRACTION = 0.01


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise MegaPipeError(f"cannot read {path}: {e}") from None


def _ints(line: str, path: Path, lineno: int, count: int) -> list[int]:
    fields = line.split()
    try:
        if len(fields) < count:
            raise ValueError
        return [int(f) for f in fields[:count]]
    except ValueError:
        raise MegaPipeError(f"{path}:{lineno}: expected {count} integers, got {line!r}") from None


def _shot_rows(path: str | os.PathLike, columns: int) -> np.ndarray:
    """The first ``columns`` integers of every line of a MovieNet shot file, checked."""
    path = Path(path)
    rows = [_ints(line, path, i, columns) for i, line in enumerate(_read_lines(path), 1)
            if line.strip()]
    if not rows:
        raise MegaPipeError(f"{path}: no shots")
    frames = np.asarray(rows, dtype=np.int64)
    bad = np.flatnonzero(frames[:, 0] > frames[:, 1])
    if bad.size:
        raise MegaPipeError(f"{path}: shot {bad[0]} starts after it ends")
    return frames


def read_shot_file(path: str | os.PathLike) -> np.ndarray:
    """``shot_movie318/<imdb>.txt`` -> (n_shots, 2) int64 [start_frame, end_frame] (inclusive)."""
    return _shot_rows(path, 2)


def read_shot_keyframes(path: str | os.PathLike) -> np.ndarray:
    """``shot_movie318/<imdb>.txt`` with its key frames -> (n_shots, 5) int64 rows
    ``[start_frame, end_frame, kf1, kf2, kf3]`` (end inclusive; key frames are frame numbers of
    the movie, checked to lie in their shot by the caller)."""
    return _shot_rows(path, 5)


def read_label_file(path: str | os.PathLike, n_shots: int) -> list[int | None]:
    """``label318/<imdb>.txt`` -> one label per MovieNet shot; None where the file has no line
    (normally only the last shot)."""
    path = Path(path)
    labels: list[int | None] = [None] * n_shots
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        shot, label = _ints(line, path, lineno, 2)
        if not 0 <= shot < n_shots:
            raise MegaPipeError(f"{path}:{lineno}: shot {shot} out of range (the shot list has "
                                f"{n_shots} shots)")
        if label not in (0, 1, -1):
            raise MegaPipeError(f"{path}:{lineno}: label {label} is not 0, 1 or -1")
        if labels[shot] is not None:
            raise MegaPipeError(f"{path}:{lineno}: shot {shot} labelled twice")
        labels[shot] = label
    return labels


def read_split_file(path: str | os.PathLike) -> dict[str, list[str]]:
    """``split318.json`` -> {split: [imdb, ...]} for the train/val/test keys (others, such as
    "all", are ignored)."""
    path = Path(path)
    data = read_json(path, "split file", expect=dict)
    splits = {}
    for split in SPLITS:
        ids = data.get(split, [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise MegaPipeError(f"{path}: {split!r} must be a list of imdb ids")
        splits[split] = ids
    if not any(splits.values()):
        raise MegaPipeError(f"{path}: no movie in train, val or test")
    return splits


@dataclass
class LabelTransfer:
    """Scene labels for our shots and how they were obtained."""

    labels: list[int | None]   # one per shot of ours; the last is None
    method: str                # "index" or "time"
    n_source_shots: int        # MovieNet's shots
    n_boundaries: int          # MovieNet boundaries (1 or −1)
    n_matched: int             # ... that landed on one of our shots
    n_merged: int              # ... that landed on a shot already marked


def transfer_labels(movienet_labels: Sequence[int | None], movienet_frames: np.ndarray,
                    our_end_s: np.ndarray, *, method: str = "auto", fps: float = DEFAULT_FPS,
                    tolerance_s: float = DEFAULT_TOLERANCE_S) -> LabelTransfer:
    """Put MovieNet's per-shot labels on our shots (see the module docstring)."""
    if method not in TRANSFERS:
        raise MegaPipeError(f"unknown transfer {method!r}; expected one of {', '.join(TRANSFERS)}")
    n_ours, n_theirs = len(our_end_s), len(movienet_labels)
    boundaries = [k for k, label in enumerate(movienet_labels) if label]
    same_count = n_ours == n_theirs
    if method == "index" and not same_count:
        raise MegaPipeError(f"cannot copy labels by index: MovieNet has {n_theirs} shots, the "
                            f"features have {n_ours} (use the time transfer)")
    if method == "index" or (method == "auto" and same_count):
        return LabelTransfer(list(movienet_labels), "index", n_theirs, len(boundaries),
                             len(boundaries), 0)
    their_cuts = (np.asarray(movienet_frames)[:, 1] + 1) / fps
    our_cuts = np.asarray(our_end_s, dtype=np.float64)[:-1]
    labels = [0] * len(our_cuts) + [None]
    n_matched = n_merged = 0
    for k in boundaries:
        if our_cuts.size == 0:
            break
        j = int(np.argmin(np.abs(our_cuts - their_cuts[k])))
        if abs(our_cuts[j] - their_cuts[k]) > tolerance_s:
            continue
        n_matched += 1
        if labels[j]:
            n_merged += 1
            labels[j] = 1 if 1 in (labels[j], movienet_labels[k]) else -1
        else:
            labels[j] = movienet_labels[k]
    return LabelTransfer(labels, "time", n_theirs, len(boundaries), n_matched, n_merged)


@dataclass
class MovieNetReport:
    """What :func:`convert_movienet` did, for the user."""

    entries: list[MovieEntry]
    transfers: dict[str, LabelTransfer]
    skipped: dict[str, str]    # imdb id -> why it is not in the manifest
    warnings: list[str]


def convert_movienet(label_dir: str | os.PathLike, shot_dir: str | os.PathLike,
                     split_file: str | os.PathLike, features_root: str | os.PathLike,
                     manifest_path: str | os.PathLike, *, fps: float = DEFAULT_FPS,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, transfer: str = "auto"
                     ) -> MovieNetReport:
    """Write a manifest with ``scene_labels`` and ``split`` for every MovieNet-318 movie of
    ``split_file`` that has a complete feature folder ``features_root/<imdb>``; the others are
    reported in ``skipped``."""
    if fps <= 0 or tolerance_s < 0:
        raise MegaPipeError("--fps must be positive and --tolerance non-negative")
    check_output_file(manifest_path, "--manifest")
    label_dir, shot_dir, features_root = Path(label_dir), Path(shot_dir), Path(features_root)
    report = MovieNetReport([], {}, {}, [])
    for split, ids in read_split_file(split_file).items():
        for imdb in ids:
            folder = FeatureFolder(features_root / imdb)
            problem = folder.problem()
            if problem:
                report.skipped[imdb] = problem
                continue
            frames = read_shot_file(shot_dir / f"{imdb}.txt")
            labels = read_label_file(label_dir / f"{imdb}.txt", len(frames))
            our_end_s = folder.read_shots(["end_s"])["end_s"].to_numpy()
            if our_end_s.size == 0:
                report.skipped[imdb] = f"{folder.shots_path} has no shots"
                continue
            result = transfer_labels(labels, frames, our_end_s, method=transfer, fps=fps,
                                     tolerance_s=tolerance_s)
            their_duration, our_duration = (frames[-1, 1] + 1) / fps, float(our_end_s[-1])
            if abs(their_duration - our_duration) > max(_DURATION_SLACK_S,
                                                        _DURATION_SLACK_FRACTION * our_duration):
                report.warnings.append(
                    f"{imdb}: MovieNet's shots span {their_duration:.1f} s at {fps:g} fps but the "
                    f"features span {our_duration:.1f} s (another cut of the movie, or a frame "
                    "rate other than --fps?)")
            report.transfers[imdb] = result
            report.entries.append(MovieEntry(movie_id=imdb, features=folder, split=split,
                                             scene_labels=result.labels))
    if not report.entries:
        raise MegaPipeError(f"no movie of {split_file} has a complete feature folder under "
                            f"{features_root}")
    write_manifest(manifest_path, report.entries)
    return report


def describe_transfer(imdb: str, t: LabelTransfer, tolerance_s: float) -> str:
    """One line saying how a movie's labels were transferred."""
    n_ours = len(t.labels)
    if t.method == "index":
        return f"{imdb}: {n_ours} shots, labels copied by index ({t.n_boundaries} boundaries)"
    return (f"{imdb}: MovieNet has {t.n_source_shots} shots, the features {n_ours}; labels moved by "
            f"time: {t.n_matched}/{t.n_boundaries} boundaries within {tolerance_s:g} s of one "
            f"of our cuts ({t.n_merged} merged onto the same shot)")
