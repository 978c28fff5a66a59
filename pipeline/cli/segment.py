"""``mega-pipe segment``: a movie in, ``boundaries.json`` out (pipeline/segment.py does the work)."""
from __future__ import annotations

import logging
from pathlib import Path

from ...manifests.atomic import check_output_dir
from ...manifests.errors import MegaPipeError
from ..catalogue import CatalogueJob
from ..inputs import MovieInput, read_catalogue
from .extract import (
    add_catalogue_options,
    add_extract_options,
    extract_config,
    is_catalogue,
    plural,
    run_catalogue_command,
)

log = logging.getLogger(__name__)


def _cmd_segment(args) -> int:
    # here, not at the top: these import torch (docs/architecture.md)
    from ..segment import load_checkpoints, missing_message, segment_config, segment_movie, segment_unit

    inputs = read_catalogue(args.video)
    if is_catalogue(args, inputs):
        return _segment_catalogue(args, inputs, load_checkpoints, segment_config, segment_unit)
    inp = inputs[0]
    doc, level = segment_movie(
        MovieInput(inp.video, args.subtitles, args.synopsis, args.id or inp.movie_id,
                   args.synopsis_lines, inp.audio_track, inp.subtitle_track),
        args.out, extract_config(args), args.features, scene_checkpoint=args.scene_checkpoint,
        act_checkpoint=args.act_checkpoint, scene_threshold=args.scene_threshold,
        n_scenes=args.scenes, chapters=args.chapters, chapters_level=args.chapters_level)
    movie_id = doc["movie"]["id"]
    scenes = plural(len(doc["scenes"]), "scene") if doc["scenes"] is not None else "- scenes"
    print(f"{movie_id}: {plural(len(doc['shots']), 'shot')}, {scenes}, "
          f"{'5 turning points' if doc['turning_points'] else 'no turning points'} -> {args.out}")
    for line in doc["missing"]:
        log.info("%s", missing_message(line))
    if level is not None:
        print(f"{movie_id}: {level} chapters -> {args.chapters}")
    return 0


def _segment_catalogue(args, inputs, load_checkpoints, segment_config, segment_unit) -> int:
    """Several movies: ``--out`` is a folder of ``<movie id>.json`` boundaries files (the
    functions of pipeline/segment.py are handed in by the caller, which imports it)."""
    given = [o for o, v in (("--chapters", args.chapters), ("--subtitles", args.subtitles),
                            ("--synopsis", args.synopsis), ("--id", args.id)) if v]
    if given:
        raise MegaPipeError(f"{', '.join(given)}: for a single VIDEO (a catalogue list gives "
                            "subtitles, synopsis and id per movie)")
    if args.out.suffix.lower() == ".json":
        raise MegaPipeError(f"--out {args.out}: with several movies --out is a folder (one "
                            "<movie id>.json each)")
    if args.scenes is not None and args.scenes < 1:
        raise MegaPipeError(f"--scenes must be at least 1, got {args.scenes}")
    cfg = extract_config(args)
    check_output_dir(args.features, "--features")
    ckpts = load_checkpoints(args.scene_checkpoint, args.act_checkpoint, cfg.device)
    job = CatalogueJob("segment", args.out, segment_config(cfg, ckpts), unit=segment_unit,
                       features=args.features,
                       scene_checkpoint=args.scene_checkpoint,
                       act_checkpoint=args.act_checkpoint, scene_threshold=args.scene_threshold,
                       n_scenes=args.scenes, debug=args.debug)
    return run_catalogue_command(args, job, inputs,
                                 lambda r: f"{r['movie_id']}: -> {r['output']}")


def add_cli(sub) -> None:
    p = sub.add_parser("segment", help="predict scene and act boundaries of a movie")
    p.add_argument("video", nargs="+", metavar="VIDEO",
                   help="a movie file; or several, folders, globs, CSV/JSONL catalogue lists "
                   "(then --out is a folder of <movie id>.json; docs/scale-out.md)")
    p.add_argument("--out", type=Path, required=True,
                   help="boundaries.json to write (a catalogue: the folder for them)")
    p.add_argument("--scene-checkpoint", type=Path, metavar="CKPT",
                   help="scene model (`train --task scene` best.pt); default: checkpoint-free "
                   "scenes from shot coherence (docs/unsupervised.md)")
    p.add_argument("--act-checkpoint", type=Path, metavar="CKPT",
                   help="act model (`train --task act` best.pt; an act-sync one also reads "
                   "--synopsis); default: turning points from TRIPOD's position prior")
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
    add_catalogue_options(p)
    p.set_defaults(func=_cmd_segment)
