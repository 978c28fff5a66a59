"""``mega-pipe manifest movienet|tripod|synth``: training manifests from public label formats, or
a synthetic set (the converters in manifests/ do the work; their reports go to stdout).

The spellings ``manifest-movienet`` and ``manifest-tripod`` of earlier versions are kept as
hidden aliases."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ...extractors.registry import model_set_dims
from ...manifests.movienet import (
    DEFAULT_FPS,
    DEFAULT_TOLERANCE_S,
    TRANSFERS,
    convert_movienet,
    describe_transfer,
)
from ...manifests.schema import SPLITS
from ...manifests.synth import VARIANTS, format_modalities, generate, parse_modalities
from ...manifests.tripod import convert_tripod, read_name_map
from ..synopsis import SynopsisFolderWriter
from .extract import plural

log = logging.getLogger(__name__)

#: The old spellings (hidden from --help): alias -> converter.
ALIASES = {"manifest-movienet": "movienet", "manifest-tripod": "tripod"}


def tiny_modalities() -> dict[str, int]:
    """The default modalities of ``manifest synth``: those of the ``tiny`` extractor set, with
    their dimensions (from the weights registry), so that a checkpoint trained on the default
    synthetic set segments a movie extracted with ``--models tiny``."""
    return model_set_dims("tiny")


def _movienet_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", required=True, type=Path, help="label318 folder")
    p.add_argument("--shots", required=True, type=Path, help="shot_movie318 folder")
    p.add_argument("--split-file", required=True, type=Path, help="split318.json")
    p.add_argument("--features", required=True, type=Path,
                   help="folder holding one extract output per imdb id")
    p.add_argument("--manifest", required=True, type=Path, help="manifest JSONL to write")
    p.add_argument("--fps", type=float, default=DEFAULT_FPS,
                   help="frame rate of MovieNet's frame numbers (default %(default)s)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S,
                   help="max seconds between MovieNet's cut and ours (default %(default)s)")
    p.add_argument("--transfer", choices=TRANSFERS, default="auto",
                   help="auto: by index when the shot counts match, else by time")
    p.set_defaults(func=_cmd_movienet)


def _tripod_options(p: argparse.ArgumentParser) -> None:
    for split in SPLITS:
        p.add_argument(f"--{split}", type=Path, help=f"TRIPOD CSV of the {split} split")
    p.add_argument("--features", required=True, type=Path,
                   help="folder holding (or that will hold) one extract output per movie")
    p.add_argument("--manifest", required=True, type=Path, help="manifest JSONL to write")
    p.add_argument("--synopsis-dir", required=True, type=Path,
                   help="where to write <movie_id>.txt, one sentence per line")
    p.add_argument("--name-map", type=Path,
                   help="JSON object {TRIPOD movie name: movie_id}; default: match "
                        "feature folders by name, then by slug")
    p.add_argument("--synopses-only", action="store_true",
                   help="also write a synopsis-only feature folder per movie (its sentences "
                        "embedded with the model set's subtitle encoder, no video needed): the "
                        "input of `train --task synopsis`")
    p.add_argument("--models", default="paper", choices=("paper", "tiny"),
                   help="with --synopses-only: the model set whose sentence encoder embeds the "
                        "sentences (default paper: all-MiniLM-L6-v2, installed with mega-pipe)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="with --synopses-only: where the sentence encoder runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tripod, parser=p)


def _synth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, metavar="OUT",
                   help="output folder (one sub-folder per movie + manifest.jsonl)")
    p.add_argument("--movies", type=int, default=50, help="number of movies (default 50)")
    p.add_argument("--seed", type=int, default=0,
                   help="the set's random seed: the same seed gives the same set (default 0)")
    p.add_argument("--variant", choices=VARIANTS, default="default",
                   help="relational: every movie draws its scene content and camera set-ups afresh, "
                        "so only within-movie similarity marks a scene; context: as relational, and "
                        "a turning point is where the movie's situation changes; alignment: as relational, "
                        "and only the synopsis (a TP sentence matched to its shots) marks a turning "
                        "point; crossmodal: as alignment, and at a turning point one modality "
                        "disagrees with the others (docs/training.md)")
    p.add_argument("--tripod-setting", action="store_true",
                   help="training movies without shot-level turning points: only their synopsis "
                        "sentences are labelled, as on TRIPOD")
    p.add_argument("--modalities", default=format_modalities(tiny_modalities()),
                   help="name:dim,name:dim,... (default: the tiny extractor set's, %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="OUT already holds a synthetic set: replace it (its movie folders are "
                   "removed; other files in OUT are kept)")
    p.set_defaults(func=_cmd_synth)


CONVERTERS = {
    "movienet": ("convert MovieNet-318 scene labels into a training manifest", _movienet_options),
    "tripod": ("convert TRIPOD synopsis turning-point annotations into synopsis files and a "
               "training manifest", _tripod_options),
    "synth": ("write a synthetic feature-level set with planted scene and act structure "
              "(the tiny extractor set's dimensions by default)", _synth_options),
}


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    m = subparsers.add_parser("manifest", help="training manifests: convert MovieNet / TRIPOD "
                              "annotations, or generate a synthetic set",
                              description="Training manifests (manifests/README.md).")
    sub = m.add_subparsers(dest="manifest_command", required=True, metavar="{movienet,tripod,synth}")
    for name, (text, options) in CONVERTERS.items():
        options(sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + "."))
    for alias, name in ALIASES.items():     # no help=: not listed by --help
        text, options = CONVERTERS[name]
        options(subparsers.add_parser(alias, prog=f"mega-pipe {alias}", description=text))


def _cmd_movienet(args: argparse.Namespace) -> int:
    report = convert_movienet(args.labels, args.shots, args.split_file, args.features,
                              args.manifest, fps=args.fps, tolerance_s=args.tolerance,
                              transfer=args.transfer)
    for imdb, t in report.transfers.items():
        print(describe_transfer(imdb, t, args.tolerance))
    for imdb, why in report.skipped.items():
        print(f"{imdb}: skipped: {why}")
    for warning in report.warnings:
        log.warning("%s", warning)
    print(f"wrote {args.manifest}: {plural(len(report.entries), 'movie')} "
          f"({len(report.skipped)} skipped)")
    return 0


def _cmd_tripod(args: argparse.Namespace) -> int:
    csvs = {split: getattr(args, split) for split in SPLITS if getattr(args, split)}
    if not csvs:
        args.parser.error("give at least one of --train, --val, --test")
    name_map = read_name_map(args.name_map) if args.name_map else None
    from tqdm import tqdm

    writer = SynopsisFolderWriter(args.models, device=args.device, offline=True) if args.synopses_only else None
    # the movies are counted as the CSVs are read: a bar without a total (movies, rate)
    with tqdm(desc="synopses", unit="movie", file=sys.stderr, dynamic_ncols=True,
              disable=(writer is None or args.no_progress) or None) as bar:
        report = convert_tripod(csvs, args.features, args.manifest, args.synopsis_dir,
                                name_map=name_map, synopsis_folder=writer and _counted(writer, bar))
    if writer is not None:
        print(f"synopsis-only feature folders: {len(writer.written)} embedded now, "
              f"{len(report.entries) - len(writer.written)} reused ({writer.entry.name})")
    for entry in report.entries:
        movie = report.movies[entry.movie_id]
        print(f"{movie.name!r} -> {entry.movie_id} ({entry.split}): "
              f"{plural(len(movie.sentences), 'sentence')}, "
              f"{plural(movie.n_annotations, 'annotation')}")
        if entry.movie_id in report.problems:
            print(f"  todo: {report.problems[entry.movie_id]}; extract with --id "
                  f"{entry.movie_id} --synopsis {report.synopsis_files[entry.movie_id]}")
    for name in report.unmapped:
        print(f"{name!r}: not in the name map, skipped")
    print(f"wrote {args.manifest}: {plural(len(report.entries), 'movie')}, "
          f"{len(report.problems)} still to extract")
    return 0


def _counted(writer, bar):
    """``writer`` (a synopsis-folder writer), advancing ``bar`` by one movie per call."""
    def write(folder, movie_id, sentences):
        writer(folder, movie_id, sentences)
        bar.update(1)
    return write


def _cmd_synth(args: argparse.Namespace) -> int:
    print(generate(args.out, args.movies, args.seed, modalities=parse_modalities(args.modalities),
                   variant=args.variant, tripod_setting=args.tripod_setting,
                   overwrite=args.overwrite))
    return 0
