"""``mega-pipe export``: boundaries -> editors' and players' formats (pipeline/export.py)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..export import FORMATS, LEVELS, export

log = logging.getLogger(__name__)


def _cmd_export(args) -> int:
    src, done = export(args.input, args.out, args.format, args.level, args.apply, args.movie)
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
