"""``mega-pipe pretrain`` and ``mega-pipe embed`` (docs/pretraining.md): long-range multimodal
pretraining of MEGA's per-modality encoders on unlabelled feature folders, and the contextual
per-shot embeddings of a pretrained model (``model/pretrain.py``, ``pipeline/embed.py``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...manifests.errors import MegaPipeError
from .extract import csv_list


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain MEGA's per-modality encoders on unlabelled feature folders")
    p.add_argument("--manifest", required=True, type=Path,
                   help="manifest.jsonl: its 'train' movies are pretrained on (labels unused), 'val' "
                        "picks best.pt, 'test' is never read")
    p.add_argument("--out", required=True, type=Path, help="run folder: best.pt, last.pt, metrics.jsonl")
    p.add_argument("--config", default="scene-small",
                   help="the MEGA config whose encoder widths are used (packaged name or JSON file; "
                        "default scene-small); `train --init` needs the same widths")
    p.add_argument("--seq-len", type=int, default=256, help="shots per sample (default 256)")
    p.add_argument("--mask-ratio", type=float, default=0.15, help="shots hidden per modality (default 0.15)")
    p.add_argument("--tau", type=float, default=0.07, help="InfoNCE temperature (default 0.07)")
    p.add_argument("--cross-layers", type=int, default=1, help="cross-modal transformer layers (default 1)")
    p.add_argument("--neighbour-window", type=int, default=0,
                   help="inter-modal negatives within this many shots (default 0: the whole sample)")
    p.add_argument("--loss-weights", default="1,1,1", help="intra,inter,cross (default 1,1,1)")
    p.add_argument("--pretrain-epochs", dest="pretrain_epochs", type=int, help="default 20")
    p.add_argument("--pretrain-batch-size", dest="pretrain_batch_size", type=int,
                   help="samples per step (default 4)")
    p.add_argument("--pretrain-lr", dest="pretrain_lr", type=float, help="default: the config's train.lr")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model trains (default auto: cuda when there is a GPU)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed: initial weights, sample order, masks (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--modalities", type=lambda v: list(csv_list(v)),
                   help="comma-separated (default: all in every movie)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_pretrain)

    e = subparsers.add_parser(
        "embed", help="write contextual per-shot embeddings (embeddings.parquet) with a pretrained model")
    e.add_argument("folders", nargs="*", type=Path, help="feature folders (extract output)")
    e.add_argument("--checkpoint", required=True, type=Path, help="a `mega-pipe pretrain` best.pt / last.pt")
    e.add_argument("--manifest", type=Path,
                   help="also embed every folder of this manifest")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model runs (default auto: cuda when there is a GPU)")
    e.add_argument("--probe", type=Path, metavar="MANIFEST",
                   help="after embedding, report linear probes (scene boundary) on this manifest's "
                        "labelled movies: fit on 'train', scored on 'test' (docs/pretraining.md)")
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    e.set_defaults(func=_cmd_embed)


def _weights(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise MegaPipeError(f"--loss-weights: expected three numbers intra,inter,cross, got {text!r}")
    return values


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ...model.pretrain import PretrainSettings
    from ...model.pretrain_train import PretrainOptions, pretrain

    intra, inter, cross = _weights(args.loss_weights)
    settings = PretrainSettings(seq_len=args.seq_len, mask_ratio=args.mask_ratio, tau=args.tau,
                                cross_layers=args.cross_layers, neighbour_window=args.neighbour_window,
                                intra=intra, inter=inter, cross=cross)
    summary = pretrain(args.manifest, args.out, PretrainOptions(
        config=args.config, settings=settings, epochs=args.pretrain_epochs,
        batch_size=args.pretrain_batch_size, lr=args.pretrain_lr, device=args.device, seed=args.seed,
        resume=args.resume, modalities=args.modalities, progress=not args.no_progress))
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from ..embed import embed_folders, folders_of, probe_report

    folders = [] if args.probe is not None and not args.folders and args.manifest is None else \
        folders_of(args.manifest, args.folders)
    if args.probe is not None:   # the probe's movies are embedded too (cached when already done)
        folders += [f for f in folders_of(args.probe, []) if f not in folders]
    records = embed_folders(args.checkpoint, folders, device=args.device, progress=not args.no_progress)
    result: dict = {"written": sum(r["status"] == "written" for r in records),
                    "cached": sum(r["status"] == "cached" for r in records), "folders": records}
    if args.probe is not None:
        result["probe"] = probe_report(args.probe)
    print(json.dumps(result, indent=2))
    return 0
