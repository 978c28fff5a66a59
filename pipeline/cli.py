"""The ``mega-pipe`` command line.

Errors the user can fix print one line (``mega-pipe: error: ...``) and exit with status 2;
``--debug`` (or ``MEGA_PIPE_DEBUG=1``) shows the full traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mega_pipe.extractors.errors import ExtractorError
from mega_pipe.manifests.errors import MegaPipeError


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def add_extract_options(p: argparse.ArgumentParser, models: str = "paper") -> None:
    """Options shared by ``extract``, ``segment`` and ``demo`` (``models``: the default set)."""
    from .shots import DETECTORS

    p.add_argument("--subtitles", type=Path, help="sidecar subtitle file (.srt/.vtt/.ass); "
                   "default: VIDEO's sidecar, else a text subtitle stream inside VIDEO")
    p.add_argument("--synopsis", type=Path, help="synopsis text file (embedded sentence by sentence)")
    p.add_argument("--synopsis-lines", action="store_true",
                   help="the synopsis file has exactly one sentence per line (TRIPOD converter output)")
    p.add_argument("--id", help="movie id (default: the file name's stem)")
    p.add_argument("--models", default=models, choices=("paper", "tiny"),
                   help=f"model set: paper (pretrained weights, `mega-pipe weights list`) or tiny "
                   f"(small random models: try the tool, tests) (default {models})")
    p.add_argument("--modalities", type=_csv, default=None,
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
    from .extract import ExtractConfig
    from .shots import DetectorConfig

    return ExtractConfig(
        model_set=args.models, modalities=args.modalities, device=args.device,
        detector=DetectorConfig(args.detector, args.threshold, args.min_shot_len),
        frame_size=args.frame_size, weights_dirs=tuple(args.weights_dir),
        offline=args.offline, allow_download=args.download and not args.offline,
        progress=not args.no_progress, audio_track=args.audio_track,
        subtitle_track=args.subtitle_track, strict=args.strict)


def _cmd_extract(args) -> int:
    from .extract import MovieInput, run_extract

    log = (lambda s: print(s, file=sys.stderr))
    if args.movienet or args.keyframes or args.shot_file:
        inputs, extract_one, defaults = _keyframe_inputs(args, log)
    else:
        if not args.videos:
            raise MegaPipeError("give VIDEO ..., or MovieNet key frames with --movienet ROOT or "
                                "--keyframes DIR --shot-file FILE")
        if len(args.videos) > 1 and (args.subtitles or args.synopsis or args.id):
            raise MegaPipeError("--subtitles, --synopsis and --id apply to a single VIDEO")
        inputs = [MovieInput(Path(v), args.subtitles, args.synopsis, args.id, args.synopsis_lines)
                  for v in args.videos]
        extract_one, defaults = None, ()
    done, failed = run_extract(inputs, args.out, extract_config(args), log=log,
                               extract_one=extract_one, default_modalities=defaults)
    for m in done:
        print(_summary_line(args.out, m))
    if failed:
        print(f"{len(failed)} of {len(inputs)} movie(s) failed", file=sys.stderr)
        return 1
    return 0


def _keyframe_inputs(args, log) -> tuple:
    """``--movienet ROOT [IMDB ...]`` or ``--keyframes DIR --shot-file FILE``: the inputs, the
    per-movie function and the default modalities (pipeline/keyframes.py)."""
    from mega_pipe.extractors.entry import KEYFRAME_MODALITIES

    from .keyframes import KeyframeInput, extract_keyframes, movienet_inputs

    if args.subtitles or args.synopsis or args.subtitle_track or args.audio_track:
        raise MegaPipeError("key frames have no audio or subtitles: --subtitles, --synopsis, "
                            "--audio-track and --subtitle-track do not apply")
    if args.movienet:
        if args.keyframes or args.shot_file or args.id:
            raise MegaPipeError("--movienet takes the movies from ROOT: no --keyframes, "
                                "--shot-file or --id")
        inputs = movienet_inputs(args.movienet, args.videos, log=log)
    else:
        if not (args.keyframes and args.shot_file) or args.videos:
            raise MegaPipeError("--keyframes DIR and --shot-file FILE go together, without VIDEO")
        inputs = [KeyframeInput(args.keyframes, args.shot_file, args.id)]
    return inputs, extract_keyframes, KEYFRAME_MODALITIES


def _summary_line(out: Path, m: dict) -> str:
    st = m["stages"]
    mods = ", ".join(f"{k}({st.get(k, {}).get('samples', 0)})" for k in m["modalities"]) or \
        "no features"
    cached = "cached" if m.get("up_to_date") else f"{m['seconds']:.1f} s"
    return (f"{m['movie_id']}: {st['shots']['count']} shots, {m['timeline']['duration_s']:.1f} s "
            f"of video, {mods} -> {Path(out) / m['movie_id']} [{cached}]"
            + (f"; warnings: {'; '.join(m['warnings'])}" if m["warnings"] else ""))


def _cmd_score(args) -> int:
    from mega_pipe.model.metrics import read_records, score_records

    print(json.dumps(score_records(args.task, read_records(args.records)), indent=2))
    return 0


def _cmd_model_summary(args) -> int:
    from mega_pipe.model.mega import model_summary

    dims = {}
    for item in _csv(args.modalities):
        name, _, dim = item.partition("=")
        if not dim.isdigit():
            raise MegaPipeError(f"--modalities: expected name=dim, got {item!r}")
        dims[name] = int(dim)
    print(json.dumps(model_summary(args.task, dims), indent=2))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mega-pipe")
    except PackageNotFoundError:   # running from a source tree that was never installed
        return "unknown (not installed)"


CONVERTERS = {"manifest-movienet": "movienet", "manifest-tripod": "tripod"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mega-pipe",
        description="Movies -> per-shot multimodal features -> MEGA scene and act boundaries.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    s = sub.add_parser("score", help="score prediction records (JSONL) with the paper's metrics")
    s.add_argument("--task", required=True, choices=("scene", "act"))
    s.add_argument("records", type=Path)
    s.set_defaults(func=_cmd_score)

    ms = sub.add_parser("model-summary", help="parameter count of a MEGA configuration")
    ms.add_argument("--task", required=True, choices=("scene", "act"))
    ms.add_argument("--modalities", required=True, help="name=dim,... e.g. bassl=2048,place=2048,clip=512")
    ms.set_defaults(func=_cmd_model_summary)

    for name, module in CONVERTERS.items():   # listed for --help; main() dispatches them
        sub.add_parser(name, help=f"convert {module} annotations into a training manifest")

    from mega_pipe.extractors.registry import add_weights_cli
    from mega_pipe.model.cli import add_eval_cli, add_train_cli

    from .export import add_export_cli
    from .report import add_report_cli
    from .demo import add_demo_cli
    from .segment import add_segment_cli

    add_weights_cli(sub)
    add_train_cli(sub)
    add_eval_cli(sub)
    add_segment_cli(sub)
    add_export_cli(sub)
    add_report_cli(sub)
    add_demo_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("MEGA_PIPE_DEBUG", "") not in ("", "0")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in CONVERTERS:   # their own argument parsers, --help included
            import importlib

            return importlib.import_module(
                f"mega_pipe.manifests.{CONVERTERS[argv[0]]}").main(argv[1:]) or 0
        args = build_parser().parse_args(argv)
        if args.debug:
            os.environ["MEGA_PIPE_DEBUG"] = "1"
            debug = True
        return args.func(args) or 0
    except (MegaPipeError, ExtractorError) as e:
        if debug:
            raise
        print(f"mega-pipe: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mega-pipe: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console script: :func:`main`, then an immediate exit.

    With torch, torchvision and transformers loaded, the interpreter's own teardown takes about a
    second (measured on 2 cores: 4.7 s for import + exit, 3.7 s with this exit). By the time
    :func:`main` returns every output has been written and renamed into place, so after flushing
    the standard streams nothing is lost by skipping it. (Code that starts services needing an
    orderly shutdown must stop them before :func:`main` returns.)"""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
