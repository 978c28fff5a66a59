"""TRIPOD synopsis annotations -> training manifest (tp_sentences) + one synopsis file per movie.

TRIPOD's ``TRIPOD_synopses_{train,test}.csv`` have the columns ``movie_name, synopsis_raw,
synopsis_segmented, tp1, ..., tp5`` (docs/sources.md, "TRIPOD"):

- ``synopsis_segmented`` is the sentence list the TP indices refer to. The released files mark
  sentences as ``[STR_SENT] text [END_SENT] [STR_SENT] ...``; a Python-literal / JSON list of
  strings is accepted too.
- ``tp1..tp5`` are 0-based sentence indices; a cell may be a float such as ``3.0`` or empty
  (TP not annotated).
- Training movies annotated by several people appear once per annotation, named
  ``<movie>_0``, ``<movie>_1``, ...; the rows are merged into one movie whose TP entries list
  every annotated sentence (the manifest allows a list per TP).

For each movie the converter writes ``<synopsis_dir>/<movie_id>.txt`` with exactly the
segmented sentences, one per line (whitespace inside a sentence collapsed to single spaces,
empty sentences dropped and the TP indices renumbered), so that ``extract --synopsis`` embeds the
same sentences the TP indices point to. Movies are matched to feature folders through a
name -> movie_id map, or else by a folder named like the movie (exact name, then its slug).
"""
from __future__ import annotations

import ast
import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from .atomic import atomic_path, check_output_dir, check_output_file
from .errors import MegaPipeError
from .features import FeatureFolder
from .jsonio import read_json
from .schema import (
    N_TURNING_POINTS,
    SPLITS,
    MovieEntry,
    write_manifest,
)

TP_COLUMNS = tuple(f"tp{k}" for k in range(1, N_TURNING_POINTS + 1))
REQUIRED_COLUMNS = ("movie_name", "synopsis_segmented", *TP_COLUMNS)
_ANNOTATOR_SUFFIX = re.compile(r"_\d+$")
_MARKED_SENTENCE = re.compile(r"\[STR_SENT\](.*?)\[END_SENT\]", re.DOTALL)


@dataclass
class TripodMovie:
    """One movie of a TRIPOD CSV, all of its annotations merged."""

    name: str                       # movie_name without the annotator suffix
    sentences: list[str]            # the segmented synopsis, cleaned
    tp_sentences: list[list[int]]   # per TP the sorted annotated sentence indices
    n_annotations: int


def parse_sentences(cell: str) -> list[str]:
    """The ``synopsis_segmented`` cell -> its sentences (raw text, possibly empty)."""
    text = cell.strip()
    if "[STR_SENT]" in text:
        return _MARKED_SENTENCE.findall(text)
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = None
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            return value
    raise ValueError("synopsis_segmented is neither a [STR_SENT] ... [END_SENT] string nor a "
                     "list of strings")


def parse_tp(cell: str) -> int | None:
    """A ``tpK`` cell -> sentence index; empty / ``nan`` -> None (not annotated)."""
    text = cell.strip()
    if text == "" or text.lower() == "nan":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a sentence index") from None
    if not value.is_integer() or value < 0:
        raise ValueError(f"{text!r} is not a non-negative integer sentence index")
    return int(value)


def _clean(sentence: str) -> str:
    return " ".join(sentence.split())


def _row_annotation(row: dict) -> tuple[list[str], list[int | None]]:
    """Cleaned sentences and the 5 TP indices (renumbered after dropping empty sentences)."""
    raw = parse_sentences(row["synopsis_segmented"] or "")
    kept = [i for i, s in enumerate(raw) if _clean(s)]
    if not kept:
        raise ValueError("the synopsis has no sentence")
    new_index = {old: new for new, old in enumerate(kept)}
    tps: list[int | None] = []
    for column in TP_COLUMNS:
        index = parse_tp(row[column] or "")
        if index is not None and index >= len(raw):
            raise ValueError(f"{column} = {index} but the synopsis has {len(raw)} sentences")
        if index is not None and index not in new_index:
            raise ValueError(f"{column} = {index} points to an empty sentence")
        tps.append(None if index is None else new_index[index])
    return [_clean(raw[i]) for i in kept], tps


def read_tripod_csv(path: str | os.PathLike) -> list[TripodMovie]:
    """Read one TRIPOD synopsis CSV, merging the annotations of a movie (see module docstring).

    When two annotations of a movie segment the synopsis differently, the later annotation's TP
    sentences are located by their text in the first one's sentences."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise MegaPipeError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MegaPipeError(f"cannot read TRIPOD CSV {path}: {e}") from None
    movies: dict[str, TripodMovie] = {}
    for number, row in enumerate(rows, 1):
        row_name = (row["movie_name"] or "").strip()
        try:
            if not row_name:
                raise ValueError("empty movie_name")
            sentences, tps = _row_annotation(row)
            name = _ANNOTATOR_SUFFIX.sub("", row_name)
            movie = movies.get(name)
            if movie is None:
                movie = movies[name] = TripodMovie(name, sentences,
                                                   [[] for _ in TP_COLUMNS], 0)
            for k, index in enumerate(tps):
                if index is None:
                    continue
                if sentences != movie.sentences:
                    if sentences[index] not in movie.sentences:
                        raise ValueError(f"{TP_COLUMNS[k]} sentence is not in the synopsis of "
                                         f"the movie's first annotation")
                    index = movie.sentences.index(sentences[index])
                if index not in movie.tp_sentences[k]:
                    movie.tp_sentences[k] = sorted(movie.tp_sentences[k] + [index])
            movie.n_annotations += 1
        except ValueError as e:
            raise MegaPipeError(f"{path}: row {number} ({row_name!r}): {e}") from None
    if not movies:
        raise MegaPipeError(f"{path}: no movie")
    return list(movies.values())


def slugify(name: str) -> str:
    """A folder-friendly id for a movie title: "Pride & Prejudice (2005 film)" ->
    "pride_prejudice_2005_film"."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or name


@dataclass
class TripodReport:
    """What :func:`convert_tripod` did, for the user."""

    entries: list[MovieEntry]
    movies: dict[str, TripodMovie]                      # movie_id -> merged annotations
    synopsis_files: dict[str, Path]                     # movie_id -> sentence file written
    problems: dict[str, str] = field(default_factory=dict)  # movie_id -> what still needs doing
    unmapped: list[str] = field(default_factory=list)   # TRIPOD names absent from the name map


def _resolve_id(name: str, features_root: Path, name_map: Mapping[str, str] | None) -> str | None:
    if name_map is not None:
        return name_map.get(name)
    for candidate in (name, slugify(name)):
        if (features_root / candidate).is_dir():
            return candidate
    return slugify(name)


def _features_problem(folder: FeatureFolder, sentences: list[str], shots: bool = True) -> str | None:
    """Why the movie cannot be trained on yet, or None when its synopsis holds exactly the
    TRIPOD sentences (``shots=False``: a synopsis-only folder is enough)."""
    problem = folder.problem(synopsis=True, shots=shots)
    if problem:
        return problem
    texts = [_clean(t) for t in folder.read_synopsis()[0]]
    if texts != sentences:
        return (f"{folder.synopsis_path} holds {len(texts)} sentences that differ from TRIPOD's "
                f"{len(sentences)}")
    return None


def convert_tripod(csv_by_split: Mapping[str, str | os.PathLike],
                   features_root: str | os.PathLike, manifest_path: str | os.PathLike,
                   synopsis_dir: str | os.PathLike, *,
                   name_map: Mapping[str, str] | None = None,
                   synopsis_folder: Callable[[Path, str, list[str]], None] | None = None) -> TripodReport:
    """Write one synopsis file per movie and a manifest with ``tp_sentences`` and ``split``.

    ``synopsis_folder(folder, movie_id, sentences)``, when given, is called for every movie
    before its folder is checked: ``manifest tripod --synopses-only`` passes one that writes a
    synopsis-only feature folder (the sentences embedded, ``pipeline/synopsis.py``), and the
    movies then need no shots (synopsis training, ``train --task synopsis``).

    ``csv_by_split`` maps a split ("train", "val", "test") to a TRIPOD CSV. With ``name_map``
    only the movies it names are converted (the others are listed in ``unmapped``). A movie
    whose features are not extracted yet (or were extracted without exactly these sentences)
    is still written and listed in ``problems``: extract it with ``--id <movie_id> --synopsis
    <synopsis file>``, then ``read_manifest`` checks everything."""
    check_output_file(manifest_path, "--manifest")
    check_output_dir(synopsis_dir, "--synopsis-dir")
    features_root, synopsis_dir = Path(features_root), Path(synopsis_dir)
    report = TripodReport([], {}, {})
    split_of: dict[str, str] = {}
    for split, csv_path in csv_by_split.items():
        if split not in SPLITS:
            raise MegaPipeError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        for movie in read_tripod_csv(csv_path):
            if movie.name in split_of:
                raise MegaPipeError(f"{movie.name!r} is in both {split_of[movie.name]} and {split}")
            split_of[movie.name] = split
            movie_id = _resolve_id(movie.name, features_root, name_map)
            if movie_id is None:
                report.unmapped.append(movie.name)
                continue
            if movie_id in report.movies:
                raise MegaPipeError(f"{movie.name!r} and {report.movies[movie_id].name!r} both "
                                    f"map to movie_id {movie_id!r}")
            report.movies[movie_id] = movie
            folder = features_root / movie_id
            report.entries.append(MovieEntry(movie_id=movie_id, features=folder, split=split,
                                             tp_sentences=movie.tp_sentences))
            if synopsis_folder is not None:
                synopsis_folder(folder, movie_id, movie.sentences)
            problem = _features_problem(FeatureFolder(folder), movie.sentences,
                                        shots=synopsis_folder is None)
            if problem:
                report.problems[movie_id] = problem
    if not report.entries:
        raise MegaPipeError("no TRIPOD movie matched the name map")
    for movie_id, movie in report.movies.items():
        target = synopsis_dir / f"{movie_id}.txt"
        with atomic_path(target) as tmp:
            tmp.write_text("".join(s + "\n" for s in movie.sentences), encoding="utf-8")
        report.synopsis_files[movie_id] = target
    write_manifest(manifest_path, report.entries)
    return report


def read_name_map(path: Path) -> dict[str, str]:
    """A name map file: a JSON object {TRIPOD movie name: movie_id}."""
    data = read_json(path, "name map", expect=dict)
    if not all(isinstance(v, str) and v for v in data.values()):
        raise MegaPipeError(f"{path}: expected a JSON object {{TRIPOD movie name: movie_id}}")
    return data
