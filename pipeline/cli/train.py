"""``mega-pipe train``, ``eval``, ``score`` and ``model-summary`` (the model/ package does the work;
the results are printed as JSON on stdout)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...manifests.errors import MegaPipeError
from ...model.metrics import read_records
from . import search as search_cli
from .extract import csv_list


def _modalities(value: str) -> list[str]:
    return list(csv_list(value))


def add_train_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train --task scene|act|synopsis --manifest M --out RUN [...]``."""
    p = subparsers.add_parser("train", help="train a MEGA model on a manifest of feature folders")
    p.add_argument("--task", required=True, choices=("scene", "act", "synopsis", "moment"),
                   help="synopsis: TRIPOD sentence-level turning points (the act model's teacher); "
                   "moment: MESM text-to-moment retrieval, --manifest is a moments.json (docs/moments.md)")
    p.add_argument("--manifest", required=True, type=Path, help="manifest.jsonl (splits and labels)")
    p.add_argument("--out", required=True, type=Path, help="run folder: best.pt, last.pt, metrics.jsonl")
    p.add_argument("--config", help="model/training config: a packaged name (default: the task's "
                   "paper config; 'scene-small'/'act-small' train in minutes on a CPU; 'synopsis' is "
                   "CPU-sized) or a JSON file")
    p.add_argument("--synopsis-checkpoint", type=Path,
                   help="act: start the synopsis network from a `train --task synopsis` checkpoint "
                        "(its weights and its synopsis normalisation; the architectures must match: "
                        "train it with `--task synopsis --config ACT_CONFIG --modalities ...`)")
    p.add_argument("--init", type=Path, help="start MEGA's per-modality encoders from a `mega-pipe pretrain` "
                   "checkpoint (same config widths; docs/pretraining.md)")
    p.add_argument("--freeze-init", action="store_true", help="with --init: keep the pretrained encoders fixed")
    p.add_argument("--epochs", type=int, help="default: the config's train.epochs")
    p.add_argument("--batch-size", type=int, help="windows (scene) or movies (act) per step")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the config's train.lr)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model trains (default auto: cuda when there is a GPU)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed: initial weights, movie order, dropout (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--modalities", type=_modalities, help="comma-separated (default: all in every movie); "
                   "--task synopsis with an act config: the act run's, to size its synopsis network")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    r = p.add_argument_group("distributed training (docs/scale-out.md)")
    r.add_argument("--ray", metavar="auto|ADDRESS",
                   help="train data-parallel on Ray Train: 'auto' joins the local Ray instance or "
                   "starts one; ADDRESS (host:port) joins that cluster")
    r.add_argument("--workers", type=int, metavar="N",
                   help="with --ray: training processes (one CPU each, or one GPU each with "
                   "--device cuda; default 2); --batch-size stays the whole batch")
    r.add_argument("--max-failures", type=int, metavar="N",
                   help="with --ray: times the workers are restarted after one is lost (they "
                   "resume from last.pt; default 2)")
    p.set_defaults(func=_cmd_train)
    return p


def add_eval_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval --checkpoint C --manifest M [--split test] [--out DIR]``."""
    p = subparsers.add_parser("eval", help="score a checkpoint on one split of a manifest")
    p.add_argument("--checkpoint", required=True, type=Path, help="a `mega-pipe train` best.pt / last.pt")
    p.add_argument("--manifest", required=True, type=Path, help="manifest.jsonl with the movies and their labels")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="which of the manifest's splits to score (default test)")
    p.add_argument("--out", type=Path, help="where eval_<task>_<split>.json and predictions_<task>_<split>.jsonl go "
                   "(default: the checkpoint's folder)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model runs (default auto: cuda when there is a GPU)")
    p.set_defaults(func=_cmd_eval)
    return p


def add_score_cli(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser("score", help="score prediction records (JSONL) with the paper's metrics")
    s.add_argument("--task", required=True, choices=("scene", "act", "synopsis", "moment"),
                   help="which task's metrics (docs/training.md, docs/moments.md)")
    s.add_argument("records", type=Path, help="prediction records, one JSON object per line "
                   "(eval's predictions_<task>_<split>.jsonl)")
    s.add_argument("--ground-truth", type=Path, help="moment: annotations (QVHighlights JSON Lines); records "
                   "are predictions in the official submission layout (docs/moments.md)")
    s.add_argument("--protocol", default="qvhighlights", choices=("qvhighlights", "charades"),
                   help="moment: which dataset's official metrics (default qvhighlights)")
    s.set_defaults(func=_cmd_score)


def add_model_summary_cli(subparsers: argparse._SubParsersAction) -> None:
    ms = subparsers.add_parser("model-summary", help="parameter count of a MEGA configuration")
    ms.add_argument("--task", required=True, choices=("scene", "act"), help="which model")
    ms.add_argument("--modalities", required=True, help="name=dim,... e.g. bassl=2048,place=2048,clip=512")
    ms.add_argument("--config", help="packaged config name or JSON file (default: the task's paper config, "
                                     "e.g. scene-small, scene-relational, act-small, act-sync)")
    ms.add_argument("--sentence-dim", type=int, default=384,
                    help="act: synopsis sentence-vector dimension of the synopsis model (default 384, MiniLM)")
    ms.set_defaults(func=_cmd_model_summary)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    add_train_cli(subparsers)
    add_eval_cli(subparsers)
    add_score_cli(subparsers)
    add_model_summary_cli(subparsers)


def _cmd_train(args: argparse.Namespace) -> int:
    if args.task == "moment":
        return search_cli.train_moment(args)
    from ...model.train import TrainOptions, train

    options = TrainOptions(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
        resume=args.resume, modalities=args.modalities, progress=not args.no_progress, config=args.config,
        synopsis_checkpoint=args.synopsis_checkpoint, init=args.init, freeze_init=args.freeze_init,
    )
    if args.ray:
        from ..ray_train import train_on_ray

        summary = train_on_ray(args.task, args.manifest, args.out, options, args.ray,
                               2 if args.workers is None else args.workers,
                               2 if args.max_failures is None else args.max_failures)
    elif args.workers is not None or args.max_failures is not None:
        raise MegaPipeError("--workers and --max-failures apply to a run with --ray")
    else:
        summary = train(args.task, args.manifest, args.out, options)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if search_cli.is_moment_checkpoint(args.checkpoint):
        return search_cli.eval_moment(args)
    from ...model.evaluate import evaluate

    print(json.dumps(evaluate(args.checkpoint, args.manifest, args.split, args.out, device=args.device), indent=2))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    if args.task == "moment":
        return search_cli.score_moment(args)
    from ...model.tasks import task_for, warn_unless_above_prior
    metrics = task_for(args.task).scored(read_records(args.records))   # as eval reports them
    warn_unless_above_prior(metrics, str(args.records))
    print(json.dumps(metrics, indent=2))
    return 0


def _cmd_model_summary(args: argparse.Namespace) -> int:
    from ...model.summary import model_summary

    dims = {}
    for item in csv_list(args.modalities):
        name, _, dim = item.partition("=")
        if not dim.isdigit():
            raise MegaPipeError(f"--modalities: expected name=dim, got {item!r}")
        dims[name] = int(dim)
    if args.sentence_dim < 1:
        raise MegaPipeError(f"--sentence-dim must be at least 1, got {args.sentence_dim}")
    print(json.dumps(model_summary(args.task, dims, sentence_dim=args.sentence_dim, config=args.config), indent=2))
    return 0
