"""``mega-pipe report``: one self-contained HTML page of a movie (pipeline/report.py does the work)."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from ...manifests.atomic import atomic_path, check_output_dir, check_output_file
from ...manifests.errors import MegaPipeError
from ..report import gather, render_html, render_pngs

log = logging.getLogger(__name__)
HTML_SUFFIXES = (".html", ".htm")


def _cmd_report(args) -> int:
    t0 = time.perf_counter()
    if args.thumbnail_width < 16:
        raise MegaPipeError("--thumbnail-width must be at least 16 px")
    if args.matrix_size < 0:
        raise MegaPipeError(f"--matrix-size {args.matrix_size}: give 0 (one cell per shot) or a "
                            "positive number of cells")
    out = check_output_file(args.out, suffixes=HTML_SUFFIXES)     # PNG figures: --png DIR
    png_dir = check_output_dir(args.png, "--png") if args.png is not None else None
    data = gather(args.boundaries, args.features, args.movie, not args.no_thumbnails,
                  args.thumbnail_width, args.matrix_size, out)
    html = render_html(data)
    pngs = render_pngs(data) if png_dir is not None else {}
    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
        os.chmod(tmp, 0o666 & ~umask)      # a report is meant to be shared (mkstemp made 0600)
    for name, blob in pngs.items():
        with atomic_path(png_dir / name) as tmp:
            tmp.write_bytes(blob)
            os.chmod(tmp, 0o666 & ~umask)
    for note in data["notes"]:
        log.info("note: %s", note)
    size = out.stat().st_size
    print(f"{data['movie']['id']}: {len(data['shots'])} shots, "
          f"{len(data['similarity'])} similarity matrices -> {out} ({size / 1e6:.2f} MB"
          + (f"; {len(pngs)} PNGs in {png_dir}" if pngs else "") + f") [{time.perf_counter() - t0:.1f} s]")
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
