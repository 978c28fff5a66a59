"""``mega-pipe export``: boundaries -> editors' and players' formats (pipeline/export.py)."""
from __future__ import annotations

import logging
from pathlib import Path

from ...manifests.atomic import check_output_file
from ...manifests.errors import MegaPipeError
from ..export import (
    FORMATS,
    LEVELS,
    apply_chapters,
    check_apply_target,
    format_for,
    load_source,
    notes,
    segments,
    write_export,
)

log = logging.getLogger(__name__)


def _cmd_export(args) -> int:
    if args.out is None and args.apply is None:
        raise MegaPipeError("give --out FILE (an export) and/or --apply MOVIE_COPY.mkv")
    if args.out is not None:
        check_output_file(args.out)
    fmt = format_for(args.out, args.format) if args.out is not None else None
    src = load_source(args.input)
    movie = args.movie or src.movie_path
    if args.apply is not None:
        check_apply_target(movie, args.apply, "--apply")
    done = []
    if args.out is not None:
        level = args.level or src.default_level()
        segments(src, level)                   # a missing level fails before anything is written
        for line in notes(src, fmt):
            log.info("note: %s", line)
        write_export(src, fmt, level, args.out)
        done.append(f"{level} as {fmt} -> {args.out}")
    if args.apply is not None:
        level = args.level or src.default_level(chapters=True)
        apply_chapters(src, level, movie, args.apply)
        done.append(f"{level} chapters + streams of {movie} -> {args.apply}")
    print(f"{src.movie_id}: " + "; ".join(done))
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("export", help="boundaries.json -> EDL, OTIO, FCPXML, chapters, CSV")
    p.add_argument("input", type=Path, metavar="INPUT",
                   help="boundaries.json, or a feature folder OUT/<movie_id>/ (shots only)")
    p.add_argument("--out", type=Path, help="file to write; its extension picks the format "
                   "(.edl .otio .fcpxml .vtt .ffmetadata .xml .csv) unless --format is given")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from --out)")
    p.add_argument("--level", choices=LEVELS,
                   help="segments to export (default: scenes when present, else shots; "
                   "--apply: scenes, else acts, else shots)")
    p.add_argument("--apply", type=Path, metavar="MOVIE_COPY",
                   help="also write a copy of the movie (.mkv/.mp4/.mov) with the chapters "
                   "embedded; streams are copied, not re-encoded")
    p.add_argument("--movie", type=Path,
                   help="the movie for --apply (default: movie.path in INPUT)")
    p.set_defaults(func=_cmd_export)
