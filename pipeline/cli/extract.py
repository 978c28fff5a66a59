"""``mega-pipe extract``, and the extraction options ``segment`` and ``demo`` share."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mega_pipe.manifests.atomic import check_output_dir
from mega_pipe.manifests.errors import MegaPipeError

log = logging.getLogger(__name__)


def csv_list(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def add_extract_options(p: argparse.ArgumentParser, models: str = "paper") -> None:
    """Options shared by ``extract``, ``segment`` and ``demo`` (``models``: the default set)."""
    from mega_pipe.pipeline.shots import DETECTORS

    p.add_argument("--subtitles", type=Path, help="sidecar subtitle file (.srt/.vtt/.ass); "
                   "default: VIDEO's sidecar, else a text subtitle stream inside VIDEO")
    p.add_argument("--synopsis", type=Path, help="synopsis text file (embedded sentence by sentence)")
    p.add_argument("--synopsis-lines", action="store_true",
                   help="the synopsis file has exactly one sentence per line (TRIPOD converter output)")
    p.add_argument("--id", help="movie id (default: the file name's stem)")
    p.add_argument("--models", default=models, choices=("paper", "tiny"),
                   help=f"model set: paper (pretrained weights, `mega-pipe weights list`) or tiny "
                   f"(small random models: try the tool, tests) (default {models})")
    p.add_argument("--modalities", type=csv_list, default=None,
                   help="comma-separated subset of clip,place,appr,action,audio,subtitle,bassl "
                   "(default: the first six; with key frames bassl,place,clip)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--offline", action="store_true", help="never download weights")
    p.add_argument("--download", action="store_true",
                   help="download missing weights into the weights dir (needs network)")
    p.add_argument("--weights-dir", type=Path, action="append", default=[],
                   help="folder with model weights (repeatable; also $MEGA_PIPE_WEIGHTS_DIR)")
    p.add_argument("--detector", default="adaptive", choices=DETECTORS,
                   help="shot detector (PySceneDetect): adaptive (default), content, fade")
    p.add_argument("--threshold", type=float, default=None,
                   help="detector threshold (default: the detector's own)")
    p.add_argument("--min-shot-len", type=float, default=0.5, metavar="SECONDS",
                   help="minimum shot length in seconds (default 0.5)")
    p.add_argument("--frame-size", type=int, default=None,
                   help="short side in px of the decoded frames (default: the largest input "
                   "size of the model set's image models)")
    p.add_argument("--audio-track", metavar="N|LANG",
                   help="audio stream to use: its number among the audio streams (0, 1, ...) or "
                   "its language tag (e.g. eng); default the first")
    p.add_argument("--subtitle-track", metavar="N|LANG",
                   help="subtitle stream inside VIDEO to use (number among the subtitle streams "
                   "or language tag; preferred to a sidecar file); default: a sidecar, else the "
                   "first text stream")
    p.add_argument("--strict", action="store_true",
                   help="treat warnings (truncated file, decoding errors, subtitles outside the "
                   "movie, several audio tracks, ...) as errors: the movie fails")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def extract_config(args):
    from mega_pipe.pipeline.extract import ExtractConfig
    from mega_pipe.pipeline.shots import DetectorConfig

    return ExtractConfig(
        model_set=args.models, modalities=args.modalities, device=args.device,
        detector=DetectorConfig(args.detector, args.threshold, args.min_shot_len),
        frame_size=args.frame_size, weights_dirs=tuple(args.weights_dir),
        offline=args.offline, allow_download=args.download and not args.offline,
        progress=not args.no_progress, audio_track=args.audio_track,
        subtitle_track=args.subtitle_track, strict=args.strict)


def _cmd_extract(args) -> int:
    from mega_pipe.pipeline.extract import MovieInput, run_extract

    check_output_dir(args.out, "--out")
    if args.movienet or args.keyframes or args.shot_file:
        inputs, extract_one, defaults = _keyframe_inputs(args)
    else:
        if not args.videos:
            raise MegaPipeError("give VIDEO ..., or MovieNet key frames with --movienet ROOT or "
                                "--keyframes DIR --shot-file FILE")
        if len(args.videos) > 1 and (args.subtitles or args.synopsis or args.id):
            raise MegaPipeError("--subtitles, --synopsis and --id apply to a single VIDEO")
        inputs = [MovieInput(Path(v), args.subtitles, args.synopsis, args.id, args.synopsis_lines)
                  for v in args.videos]
        extract_one, defaults = None, ()
    done, failed = run_extract(inputs, args.out, extract_config(args), debug=args.debug,
                               extract_one=extract_one, default_modalities=defaults,
                               isolate=len(inputs) > 1)
    for m in done:
        print(summary_line(args.out, m))
    if failed:
        log.info("%d of %d movie(s) failed", len(failed), len(inputs))
        return 1
    return 0


def _keyframe_inputs(args) -> tuple:
    """``--movienet ROOT [IMDB ...]`` or ``--keyframes DIR --shot-file FILE``: the inputs, the
    per-movie function and the default modalities (pipeline/keyframes.py)."""
    from mega_pipe.extractors.entry import KEYFRAME_MODALITIES
    from mega_pipe.pipeline.keyframes import (
        KeyframeInput,
        extract_keyframes,
        movienet_inputs,
    )

    if args.subtitles or args.synopsis or args.subtitle_track or args.audio_track:
        raise MegaPipeError("key frames have no audio or subtitles: --subtitles, --synopsis, "
                            "--audio-track and --subtitle-track do not apply")
    if args.movienet:
        if args.keyframes or args.shot_file or args.id:
            raise MegaPipeError("--movienet takes the movies from ROOT: no --keyframes, "
                                "--shot-file or --id")
        inputs = movienet_inputs(args.movienet, args.videos)
    else:
        if not (args.keyframes and args.shot_file) or args.videos:
            raise MegaPipeError("--keyframes DIR and --shot-file FILE go together, without VIDEO")
        inputs = [KeyframeInput(args.keyframes, args.shot_file, args.id)]
    return inputs, extract_keyframes, KEYFRAME_MODALITIES


def summary_line(out: Path, m: dict) -> str:
    """The one line ``extract`` prints on stdout per movie done."""
    st = m["stages"]
    mods = ", ".join(f"{k}({st.get(k, {}).get('samples', 0)})" for k in m["modalities"]) or \
        "no features"
    cached = "cached" if m.get("up_to_date") else f"{m['seconds']:.1f} s"
    return (f"{m['movie_id']}: {st['shots']['count']} shots, {m['timeline']['duration_s']:.1f} s "
            f"of video, {mods} -> {Path(out) / m['movie_id']} [{cached}]"
            + (f"; warnings: {'; '.join(m['warnings'])}" if m["warnings"] else ""))


def add_cli(sub) -> None:
    e = sub.add_parser("extract", help="extract per-shot multimodal features (Parquet)")
    e.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="movie files; with --movienet: the imdb ids to extract (default: all)")
    e.add_argument("--out", type=Path, default=Path("out"), help="output root (default ./out)")
    e.add_argument("--movienet", type=Path, metavar="ROOT",
                   help="MovieNet key frames: every movie of ROOT (ROOT/240P_frames/<imdb>/ "
                   "shot_XXXX_img_N.jpg and ROOT/scene318/shot_movie318/<imdb>.txt; "
                   "docs/reproduce.md)")
    e.add_argument("--keyframes", type=Path, metavar="DIR",
                   help="one movie's MovieNet key frames (shot_XXXX_img_N.jpg); with --shot-file")
    e.add_argument("--shot-file", type=Path, metavar="FILE",
                   help="its MovieNet shot file: start end kf1 kf2 kf3 per shot, 24 fps")
    add_extract_options(e)
    e.set_defaults(func=_cmd_extract)
