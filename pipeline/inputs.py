"""What an extraction is asked to do: its configuration and its inputs (the first stage of
docs/architecture.md; every later stage imports these types, none is imported here).

A run's movies can be named as files, folders (every movie file below them), globs, and CSV /
JSON Lines catalogue lists with one row per movie (:func:`read_catalogue`; columns
:data:`LIST_COLUMNS`: ``video`` and optional ``id``, ``subtitles``, ``synopsis``,
``synopsis_lines``, ``audio_track``, ``subtitle_track``; relative paths are relative to the list
file; docs/scale-out.md)."""
from __future__ import annotations

import csv
import dataclasses
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..extractors.entry import ENCODER_PRECISIONS
from ..manifests.errors import MegaPipeError
from ..manifests.jsonio import read_jsonl
from .shots import DetectorConfig

# What a folder given as input is searched for (case-insensitive suffixes).
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts",
    ".m2ts", ".mts", ".vob", ".ogv", ".3gp", ".mxf", ".y4m"})
LIST_SUFFIXES = (".csv", ".jsonl")
LIST_COLUMNS = ("video", "id", "subtitles", "synopsis", "synopsis_lines", "audio_track",
                "subtitle_track")
PATH_COLUMNS = ("video", "subtitles", "synopsis")


@dataclass(frozen=True)
class ExtractConfig:
    model_set: str = "paper"
    modalities: tuple[str, ...] | None = None   # None: every modality the movie has
    device: str = "auto"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    frame_size: int | None = None               # short side of the decoded frames; None: auto
    weights_dirs: tuple[Path, ...] = ()
    offline: bool = False
    allow_download: bool = False
    progress: bool = True
    audio_track: str | None = None     # --audio-track: a number among the audio streams or a
    subtitle_track: str | None = None  # language tag; likewise --subtitle-track. None: automatic
    strict: bool = False               # warnings fail the movie (not recorded: changes no output)
    encoder_precision: str = "fp32"    # the encoders' forward pass: fp32 or bf16 autocast

    def __post_init__(self):
        if self.encoder_precision not in ENCODER_PRECISIONS:
            raise ValueError(f"encoder_precision {self.encoder_precision!r}: expected one of "
                             f"{', '.join(ENCODER_PRECISIONS)}")

    def to_json(self) -> dict:
        return {"model_set": self.model_set, "modalities": list(self.modalities or []) or None,
                "device": self.device, "encoder_precision": self.encoder_precision,
                "detector": self.detector.to_json(),
                "frame_size": self.frame_size, "offline": self.offline,
                "audio_track": self.audio_track, "subtitle_track": self.subtitle_track}


@dataclass(frozen=True)
class MovieInput:
    video: Path
    subtitles: Path | None = None
    synopsis: Path | None = None
    movie_id: str | None = None
    synopsis_lines: bool = False     # the synopsis file has one sentence per line
    audio_track: str | None = None     # this movie's own --audio-track / --subtitle-track (a
    subtitle_track: str | None = None  # catalogue row's); None: the run's

    def config(self, cfg: ExtractConfig) -> ExtractConfig:
        """The run's config with this movie's own track choices, if it has any."""
        tracks = {k: v for k in ("audio_track", "subtitle_track")
                  if (v := getattr(self, k)) is not None}
        return dataclasses.replace(cfg, **tracks) if tracks else cfg

    @property
    def source(self) -> Path:
        """The path that names this input (in messages, and the default movie id's stem)."""
        return Path(self.video)


def movie_id_of(inp) -> str:
    """``--id``, else the stem of the input's ``source`` (the video; a key-frame folder)."""
    return inp.movie_id or Path(inp.source).stem


# --- Catalogues: the movies one run is given -----------------------------------------------


def read_catalogue(items: Sequence[str | os.PathLike]) -> list[MovieInput]:
    """The movies that files, folders, globs and CSV/JSONL lists name, in the order given (a
    folder's files sorted by path). A path that does not exist stays a movie of its own, so that
    it fails as that movie's error line while the others are done."""
    movies: list[MovieInput] = []
    for item in items:
        path = Path(item)
        if path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            movies += _read_list(path)
        elif path.is_dir():
            found = sorted(f for f in path.rglob("*")
                           if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()
                           and not any(p.startswith(".") for p in f.relative_to(path).parts))
            if not found:
                raise MegaPipeError(f"{path}: no movie file in this folder (looked for "
                                    f"{', '.join(sorted(VIDEO_SUFFIXES))})")
            movies += [MovieInput(f) for f in found]
        elif not path.exists() and any(c in str(item) for c in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(item), recursive=True))
            found = [f for f in found if f.is_file()]
            if not found:
                raise MegaPipeError(f"{item}: the pattern matches no file")
            movies += [MovieInput(f) for f in found]
        else:
            movies.append(MovieInput(path))
    return movies


def _read_list(path: Path) -> list[MovieInput]:
    """A CSV (header row) or JSON Lines catalogue: one movie per row."""
    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = [(i, row) for i, row in enumerate(csv.DictReader(f), 2)]
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise MegaPipeError(f"catalogue {path}: cannot read it as CSV ({e})") from None
    else:
        rows = read_jsonl(path, "catalogue")
    if not rows:
        raise MegaPipeError(f"catalogue {path} lists no movie")
    return [_row_input(path, line, row) for line, row in rows]


def _row_input(path: Path, line: int, row: dict) -> MovieInput:
    where = f"catalogue {path}:{line}"
    unknown = sorted(k for k in row if k not in LIST_COLUMNS)
    if unknown:
        raise MegaPipeError(f"{where}: unknown column {unknown[0]!r} (known: "
                            f"{', '.join(LIST_COLUMNS)})")
    values = {k: (str(v).strip() if v is not None else "") for k, v in row.items()}
    values = {k: v for k, v in values.items() if v}
    if "video" not in values:
        raise MegaPipeError(f"{where}: no 'video' (the movie file's path)")
    for k in PATH_COLUMNS:
        if k in values:
            values[k] = path.parent / Path(values[k]).expanduser()
    lines = values.pop("synopsis_lines", "false").lower()
    if lines not in ("true", "false", "1", "0", "yes", "no"):
        raise MegaPipeError(f"{where}: synopsis_lines must be true or false, got {lines!r}")
    return MovieInput(Path(values.pop("video")), values.pop("subtitles", None),
                      values.pop("synopsis", None), values.pop("id", None),
                      lines in ("true", "1", "yes"), values.pop("audio_track", None),
                      values.pop("subtitle_track", None))


def check_ids(inputs: Sequence) -> None:
    """Every movie must get a folder of its own: refuse ids that cannot name one or that two
    inputs share, before any work."""
    ids: dict[str, list[str]] = {}
    for inp in inputs:
        ids.setdefault(movie_id_of(inp), []).append(str(inp.source))
    bad = [k for k in ids if not k or k.startswith((".", "_")) or "/" in k or os.sep in k]
    if bad:
        raise MegaPipeError(f"movie id {bad[0]!r} cannot name a folder (empty, hidden, starting "
                            "with '_' or a path)")
    clashes = {k: v for k, v in ids.items() if len(v) > 1}
    if clashes:
        k, v = next(iter(clashes.items()))
        raise MegaPipeError(f"{len(v)} inputs would share the output folder {k!r} ({', '.join(v)}): "
                            "give them ids of their own (--id, or an 'id' column in a catalogue "
                            "list) or extract them in separate runs")
