"""``mega-pipe report``: one self-contained HTML page of a movie (pipeline/report.py does the work)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..report import write_report
from .extract import plural

log = logging.getLogger(__name__)


def _cmd_report(args) -> int:
    t0 = time.perf_counter()
    data, pngs = write_report(args.boundaries, args.out, args.features, args.movie,
                              not args.no_thumbnails, args.thumbnail_width, args.matrix_size,
                              args.png)
    size = args.out.stat().st_size
    n_sim = len(data["similarity"])
    print(f"{data['movie']['id']}: {plural(len(data['shots']), 'shot')}, "
          f"{n_sim} similarity {'matrix' if n_sim == 1 else 'matrices'} -> {args.out} "
          f"({size / 1e6:.2f} MB"
          + (f"; {plural(len(pngs), 'PNG')} in {args.png}" if pngs else "")
          + f") [{time.perf_counter() - t0:.1f} s]")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report of a movie's shots, scenes "
                       "and acts (docs/report.md)")
    p.add_argument("boundaries", type=Path, nargs="?", metavar="BOUNDARIES",
                   help="boundaries.json written by `mega-pipe segment`")
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument("--features", type=Path,
                   help="the movie's feature folder (default: the boundaries' provenance.features)")
    p.add_argument("--movie", type=Path, help="the movie file (default: the path in the inputs)")
    p.add_argument("--no-thumbnails", action="store_true",
                   help="no shot thumbnails (the movie is not needed)")
    p.add_argument("--thumbnail-width", type=int, default=160, help="px (default 160)")
    p.add_argument("--matrix-size", type=int, default=1000,
                   help="largest side of a similarity matrix in cells; longer movies average "
                   "blocks of consecutive shots (default 1000; 0: one cell per shot)")
    p.add_argument("--png", type=Path, metavar="DIR", help="also write the figures as PNG files here")
    p.set_defaults(func=_cmd_report)
