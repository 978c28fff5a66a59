"""``mega-pipe weights list|fetch|verify`` (the registry, extractors/registry.py, does the work)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from ...extractors.entry import MODALITIES
from ...extractors.errors import ExtractorError
from ...extractors.registry import (
    MODEL_SETS,
    check_weights_file,
    fetch_weights,
    resolve_weights,
    select_entries,
)
from ...manifests.atomic import check_output_dir


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``weights list|fetch|verify``; each sets ``func`` (``args.func(args)`` returns the
    exit status)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--weights-dir", metavar="D", type=Path, action="append", default=[],
                        help="folder holding weights files (repeatable; searched first, before $MEGA_PIPE_WEIGHTS_DIR)")
    common.add_argument("--model-set", choices=[*MODEL_SETS, "all"], default="all", help="which model set (default: all)")
    common.add_argument("--modalities", type=_modality_list, default=list(MODALITIES), metavar="M[,M...]",
                        help=f"comma-separated subset of {','.join(MODALITIES)}")
    weights = subparsers.add_parser("weights", help="list, fetch and verify model weights",
                                    description="Model weights: where they are found, fetching, and sha256 checks.")
    sub = weights.add_subparsers(dest="weights_command", required=True, metavar="{list,fetch,verify}")
    sub.add_parser("list", parents=[common], help="table of entries with the resolved path or 'missing'") \
        .set_defaults(func=_cmd_list)
    sub.add_parser("fetch", parents=[common], help="download missing files into the first --weights-dir "
                   "(else into the library caches) and verify their sha256").set_defaults(func=_cmd_fetch)
    sub.add_parser("verify", parents=[common], help="check the sha256 of every file found").set_defaults(func=_cmd_verify)


def _modality_list(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODALITIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(MODALITIES)}")
    return names


def _print_table(header: Sequence[str], rows: list[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def _cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for e in select_entries(args.model_set, args.modalities):
        path = resolve_weights(e, args.weights_dir) if e.needs_file else None
        where = "built-in" if not e.needs_file else str(path) if path else "missing"
        rows.append([e.modality, e.model_set, e.name, str(e.dim), (e.sha256 or "-")[:16], e.licence, where])
    _print_table(["modality", "set", "name", "dim", "sha256", "licence", "path"], rows)
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    dest = args.weights_dir[0] if args.weights_dir else None
    if dest is not None:
        check_output_dir(dest, "--weights-dir")
    status = 0
    for e in (e for e in select_entries(args.model_set, args.modalities) if e.needs_file):
        present = (dest / e.filename) if dest is not None else resolve_weights(e)
        if present is not None and present.is_file():
            print(f"{e.name}: present at {present}")
            continue
        try:
            print(f"{e.name}: fetched to {fetch_weights(e, dest)}")
        except ExtractorError as exc:
            print(f"{e.name}: FAILED: {exc}")
            status = 1
    return status


def _cmd_verify(args: argparse.Namespace) -> int:
    status = 0
    for e in (e for e in select_entries(args.model_set, args.modalities) if e.needs_file):
        path = resolve_weights(e, args.weights_dir)
        if path is None:
            print(f"{e.name}: missing")
            status = 1
            continue
        ok, verdict = check_weights_file(e, path)
        status = status if ok else 1
        print(f"{e.name}: {path}: {verdict}")
    return status
