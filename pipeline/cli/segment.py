"""``mega-pipe segment``: a movie in, ``boundaries.json`` out (pipeline/segment.py does the work)."""
from __future__ import annotations

import logging
from pathlib import Path

from ..inputs import MovieInput
from .extract import add_extract_options, extract_config

log = logging.getLogger(__name__)


def _cmd_segment(args) -> int:
    from ..segment import segment_movie  # here: it imports torch (docs/architecture.md)

    doc, level = segment_movie(
        MovieInput(args.video, args.subtitles, args.synopsis, args.id, args.synopsis_lines),
        args.out, extract_config(args), args.features, scene_checkpoint=args.scene_checkpoint,
        act_checkpoint=args.act_checkpoint, scene_threshold=args.scene_threshold,
        n_scenes=args.scenes, chapters=args.chapters, chapters_level=args.chapters_level,
        debug=args.debug)
    movie_id = doc["movie"]["id"]
    n_sc = len(doc["scenes"]) if doc["scenes"] is not None else "-"
    print(f"{movie_id}: {len(doc['shots'])} shots, {n_sc} scenes, "
          f"{'5 turning points' if doc['turning_points'] else 'no turning points'} -> {args.out}")
    for line in doc["missing"]:
        log.info("not predicted: %s", line)
    if level is not None:
        print(f"{movie_id}: {level} chapters -> {args.chapters}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("segment", help="predict scene and act boundaries of a movie")
    p.add_argument("video", type=Path, metavar="VIDEO")
    p.add_argument("--out", type=Path, required=True, help="boundaries.json to write")
    p.add_argument("--scene-checkpoint", type=Path)
    p.add_argument("--act-checkpoint", type=Path)
    p.add_argument("--features", type=Path, default=Path("out"),
                   help="feature cache root, shared with `extract --out` (default ./out)")
    p.add_argument("--scene-threshold", type=float, default=0.5,
                   help="boundary probability that ends a scene (default 0.5)")
    p.add_argument("--scenes", type=int, metavar="N",
                   help="exactly N scenes (the N-1 strongest boundaries); default: automatic")
    p.add_argument("--chapters", type=Path, metavar="MOVIE_COPY",
                   help="also write a copy of VIDEO (.mkv/.mp4/.mov) with the scene chapters "
                   "(else act, else shot) embedded; streams copied, not re-encoded")
    p.add_argument("--chapters-level", choices=("shots", "scenes", "acts"),
                   help="segments that become --chapters (default: scenes, else acts, else shots)")
    add_extract_options(p)
    p.set_defaults(func=_cmd_segment)
