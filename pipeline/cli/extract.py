"""``mega-pipe extract``, and the extraction options ``segment`` and ``demo`` share."""
from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path

from ...extractors.entry import ENCODER_PRECISIONS
from ...manifests.errors import MegaPipeError
from ..catalogue import CatalogueJob, counts, run_catalogue
from ..extract import extract_inputs, run_extract
from ..inputs import ExtractConfig
from ..ray_run import run_on_ray
from ..shots import DETECTORS, DetectorConfig

log = logging.getLogger(__name__)


def plural(n: int, word: str) -> str:
    """``1 shot``, ``2 shots``, ``0 movies``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def csv_list(value: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


class _ShotThreshold(argparse.Action):
    """``--shot-threshold``; its old name ``--threshold`` still works, with a warning (it sat
    beside ``segment --scene-threshold``, a threshold of another stage)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == "--threshold":
            log.warning("--threshold is deprecated: use --shot-threshold (the shot detector's "
                        "threshold)")
        setattr(namespace, self.dest, values)


def add_extract_options(parser: argparse.ArgumentParser, models: str = "paper") -> None:
    """The extraction options, defined once: one argument group of ``extract``, ``segment`` and
    ``demo`` (``models``: the command's default model set)."""
    p = parser.add_argument_group(
        "extraction options", "how the movie is read, cut into shots and encoded (the same for "
        "extract, segment and demo)")
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
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the encoders run (default auto: cuda when there is a GPU)")
    p.add_argument("--encoder-precision", default="fp32", choices=ENCODER_PRECISIONS,
                   help="the feature encoders' forward pass: fp32 (default, exact) or bf16 "
                   "autocast (GPU throughput; every feature changes by bf16 rounding and is "
                   "cached apart from the fp32 ones)")
    p.add_argument("--offline", action="store_true", help="never download weights")
    p.add_argument("--download", action="store_true",
                   help="download missing weights into the weights dir (needs network)")
    p.add_argument("--weights-dir", type=Path, action="append", default=[],
                   help="folder with model weights (repeatable; also $MEGA_PIPE_WEIGHTS_DIR)")
    p.add_argument("--detector", default="adaptive", choices=DETECTORS,
                   help="shot detector (PySceneDetect): adaptive (default), content, fade")
    p.add_argument("--shot-threshold", "--threshold", type=float, default=None,
                   action=_ShotThreshold, metavar="T",
                   help="shot detector threshold (default: the detector's own; --threshold is "
                   "the deprecated old name)")
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
    return ExtractConfig(
        model_set=args.models, modalities=args.modalities, device=args.device,
        encoder_precision=args.encoder_precision, detector=DetectorConfig(args.detector, args.shot_threshold, args.min_shot_len),
        frame_size=args.frame_size, weights_dirs=tuple(args.weights_dir),
        offline=args.offline, allow_download=args.download and not args.offline,
        progress=not args.no_progress, audio_track=args.audio_track,
        subtitle_track=args.subtitle_track, strict=args.strict)


def add_catalogue_options(parser: argparse.ArgumentParser) -> None:
    """The options of a run over several movies (a catalogue): ``extract`` and ``segment``."""
    p = parser.add_argument_group(
        "catalogue options", "several movies (files, folders, globs, CSV/JSONL lists): each is "
        "one unit of work, here or on Ray; the run ends with a summary table (docs/scale-out.md)")
    p.add_argument("--ray", metavar="auto|ADDRESS",
                   help="run the movies on Ray: 'auto' joins the local Ray instance or starts "
                   "one; ADDRESS (host:port) joins that cluster")
    p.add_argument("--ray-cpus", type=float, default=1.0, metavar="N",
                   help="CPUs each movie takes on Ray (its decode; default 1)")
    p.add_argument("--ray-gpus", type=float, default=None, metavar="F",
                   help="GPU fraction each movie takes on Ray for its encoders (default 0.25 "
                   "where the cluster has GPUs, else 0)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a movie is tried again after an unexpected error or a lost "
                   "worker (default 2; a bad input fails at once)")
    p.add_argument("--summary", type=Path, metavar="FILE.parquet",
                   help="the run's summary table (default: OUT/_catalogue/<time>-<pid>.parquet)")


def is_catalogue(args, inputs) -> bool:
    """A run over several movies, or one asked to run as a catalogue (on Ray, or with a
    summary)."""
    return len(inputs) > 1 or bool(args.ray) or args.summary is not None


def run_catalogue_command(args, job, inputs, line) -> int:
    """Run ``job`` over ``inputs`` as a catalogue (on Ray with ``--ray``); print
    ``line(outcome)`` for each movie done and the summary's path; exit status 1 if any movie
    failed."""
    remote = None
    if args.ray:
        remote = functools.partial(run_on_ray, address=args.ray, cpus=args.ray_cpus,
                                   gpus=args.ray_gpus)
    elif args.ray_cpus != 1.0 or args.ray_gpus is not None:
        raise MegaPipeError("--ray-cpus and --ray-gpus apply to a run with --ray")
    results, path = run_catalogue(
        job, inputs, remote=remote, retries=args.retries, summary=args.summary,
        progress=not args.no_progress, meta={"ray": args.ray})
    for r in results:
        if r["status"] in ("done", "cached"):
            print(line(r))
    failed = [r for r in results if r["status"] not in ("done", "cached")]
    for r in failed:                     # one line each, the summary table has them too
        print(f"{r['movie_id']}: {r['status']}: {r['error']}")
    print(f"{plural(len(results), 'movie')}: {counts(results)}; summary -> {path}")
    if failed:
        log.info("%d of %s failed", len(failed), plural(len(results), "movie"))
        return 1
    return 0


def _cmd_extract(args) -> int:
    cfg = extract_config(args)
    inputs, extract_one, defaults = extract_inputs(
        cfg, args.videos, subtitles=args.subtitles, synopsis=args.synopsis, movie_id=args.id,
        synopsis_lines=args.synopsis_lines, movienet=args.movienet, keyframes=args.keyframes,
        shot_file=args.shot_file)
    if is_catalogue(args, inputs):
        job = CatalogueJob("extract", args.out, cfg, extract_one=extract_one,
                           default_modalities=tuple(defaults),
                           debug=args.debug)
        return run_catalogue_command(args, job, inputs,
                                     lambda r: summary_line(args.out, r["manifest"]))
    for m in run_extract(inputs, args.out, cfg, extract_one=extract_one,
                         default_modalities=defaults):
        print(summary_line(args.out, m))
    return 0


def summary_line(out: Path, m: dict) -> str:
    """The one line ``extract`` prints on stdout per movie done."""
    st = m["stages"]
    mods = ", ".join(f"{k}({st.get(k, {}).get('samples', 0)})" for k in m["modalities"]) or \
        "no features"
    cached = "cached" if m.get("up_to_date") else f"{m['seconds']:.1f} s"
    return (f"{m['movie_id']}: {plural(st['shots']['count'], 'shot')}, {m['timeline']['duration_s']:.1f} s "
            f"of video, {mods} -> {Path(out) / m['movie_id']} [{cached}]"
            + (f"; warnings: {'; '.join(m['warnings'])}" if m["warnings"] else ""))


def add_cli(sub) -> None:
    e = sub.add_parser("extract", help="extract per-shot multimodal features (Parquet)")
    e.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="movie files, folders (every movie below), globs, or CSV/JSONL "
                   "catalogue lists (docs/scale-out.md); with --movienet: the imdb ids to "
                   "extract (default: all)")
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
    add_catalogue_options(e)
    e.set_defaults(func=_cmd_extract)
