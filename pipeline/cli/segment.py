"""``mega-pipe segment``: a movie in, ``boundaries.json`` out (pipeline/segment.py does the work)."""
from __future__ import annotations

import logging
from pathlib import Path

from mega_pipe.manifests.atomic import check_output_dir, check_output_file, write_json

from .extract import add_extract_options, extract_config

log = logging.getLogger(__name__)


def _cmd_segment(args) -> int:
    from mega_pipe.manifests.provenance import code_version
    from mega_pipe.pipeline.export import (
        apply_chapters,
        check_apply_target,
        load_source,
    )
    from mega_pipe.pipeline.extract import MovieInput, run_extract
    from mega_pipe.pipeline.segment import (
        finite_json,
        load_checkpoints,
        predict_boundaries,
    )

    check_output_file(args.out)
    check_output_dir(args.features, "--features")
    if args.chapters is not None:
        check_apply_target(args.video, args.chapters, "--chapters")
    paths = {"scene": args.scene_checkpoint, "act": args.act_checkpoint}
    ckpts = load_checkpoints(paths["scene"], paths["act"], args.device)
    if args.modalities is None and ckpts:
        args.modalities = tuple(dict.fromkeys(m for c in ckpts.values() for m in c.modalities))
    if "act" in ckpts and ckpts["act"].synopsis_model is not None and args.synopsis is None:
        log.info("note: no --synopsis: the act model predicts from the shots alone")
    done, _ = run_extract([MovieInput(args.video, args.subtitles, args.synopsis, args.id,
                                      args.synopsis_lines)],
                          args.features, extract_config(args), debug=args.debug, isolate=False)
    manifest = done[0]
    features = Path(args.features) / manifest["movie_id"]
    doc = predict_boundaries(manifest, features, ckpts, args.scene_threshold, args.scenes, paths)
    doc["provenance"] = {
        "scene_checkpoint": str(args.scene_checkpoint) if args.scene_checkpoint else None,
        "act_checkpoint": str(args.act_checkpoint) if args.act_checkpoint else None,
        "features": str(features), "models": manifest["models"], "code_version": code_version()}
    write_json(args.out, finite_json(doc))
    n_sc = len(doc["scenes"]) if doc["scenes"] is not None else "-"
    print(f"{manifest['movie_id']}: {len(doc['shots'])} shots, {n_sc} scenes, "
          f"{'5 turning points' if doc['turning_points'] else 'no turning points'} -> {args.out}")
    for line in doc["missing"]:
        log.info("not predicted: %s", line)
    if args.chapters is not None:
        src = load_source(args.out)
        level = args.chapters_level or src.default_level(chapters=True)
        apply_chapters(src, level, args.video, args.chapters)
        print(f"{manifest['movie_id']}: {level} chapters -> {args.chapters}")
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
