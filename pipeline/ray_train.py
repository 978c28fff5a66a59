"""``mega-pipe train --ray auto|ADDRESS --workers N`` (docs/scale-out.md, "Training").

Ray Train's ``TorchTrainer`` starts N workers (one CPU each, or one GPU each with ``--device
cuda``) and sets up ``torch.distributed`` between them (gloo on CPU, NCCL on GPU). Each worker
runs the same :func:`model.train.train` as a single process, as one rank of a
:class:`model.train.DataParallel` group: each batch is split across the ranks and the gradients
are averaged before every step; rank 0 validates and writes ``best.pt``, ``last.pt`` and
``metrics.jsonl`` into ``--out`` — the same files as a single-process run, so a checkpoint of
one loads in the other and either can resume the other's run.

Worker loss: Ray Train restarts the whole group (up to ``--max-failures`` times); every rank
then resumes from ``last.pt`` (written atomically after every epoch), so at most one epoch is
trained again. ``--out`` must be a folder every worker sees (one machine, or a shared file
system). Ray Train's own bookkeeping goes to ``--out/.ray-train``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from pathlib import Path

from ..manifests.atomic import check_output_dir
from ..manifests.errors import MegaPipeError
from ..manifests.schema import read_manifest
from ..model.config import load_config
from ..model.train import DataParallel, TrainOptions, run_summary, train
from .ray_run import connect, worker_logging

log = logging.getLogger(__name__)


def _worker_loop(config: dict) -> None:
    """One rank: the single-process training loop in a data-parallel group."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device() if config["use_gpu"] else None
    out = Path(config["out"])
    options = TrainOptions(**config["options"])
    options.resume = options.resume or (out / "last.pt").is_file()   # a restarted group
    show = options.progress and rank == 0
    options.progress = False        # per-batch bars do not survive Ray's log forwarding
    options.parallel = DataParallel(rank, ctx.get_world_size(),
                                    None if device is None else str(device))

    worker_logging(config["debug"])

    def heard(record: dict) -> None:
        if show:                    # one line per epoch, forwarded to the driver's stderr
            log.info("%s epoch %d: loss %.4f, val %s %.4f%s, %.1f samples/s", config["task"],
                     record["epoch"], record["train"]["loss"], record["select"]["metric"],
                     record["select"]["value"], " (best)" if record["select"]["best"] else "",
                     record["samples_per_s"])
        ray.train.report({"epoch": record["epoch"]})

    options.on_epoch = heard
    train(config["task"], config["manifest"], out, options)


def train_on_ray(task: str, manifest: Path, out: Path, options: TrainOptions, address: str,
                 workers: int, max_failures: int = 2) -> dict:
    """Train on ``workers`` Ray workers; returns the same summary as :func:`model.train.train`
    (what Ray prints while it runs goes to stderr: stdout is for the summary)."""
    with contextlib.redirect_stdout(sys.stderr):
        return _train_on_ray(task, manifest, out, options, address, workers, max_failures)


def _train_on_ray(task: str, manifest: Path, out: Path, options: TrainOptions, address: str,
                  workers: int, max_failures: int) -> dict:
    if workers < 1:
        raise MegaPipeError(f"--workers must be at least 1, got {workers}")
    if max_failures < 0:
        raise MegaPipeError(f"--max-failures must be at least 0, got {max_failures}")
    out = check_output_dir(out, "--out").resolve()
    if not options.resume and (out / "last.pt").exists():
        raise MegaPipeError(f"{out} already holds a run (last.pt); use --resume or another --out")
    if options.resume and not (out / "last.pt").is_file():
        raise MegaPipeError(f"--resume: {out / 'last.pt'} does not exist")
    read_manifest(manifest)                      # a bad manifest or config: one line, now
    load_config(options.config or task, task, **(options.config_overrides or {}))
    use_gpu = options.device == "cuda"
    started = connect(address)
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    try:
        have = ray.cluster_resources()
        need = "GPU" if use_gpu else "CPU"
        if have.get(need, 0) < workers:
            raise MegaPipeError(f"--workers {workers}: the Ray cluster has {have.get(need, 0):g} "
                                f"{need}s (one per worker{'; --device cuda' if use_gpu else ''})")
        config = {"task": task, "manifest": str(Path(manifest).resolve()), "out": str(out),
                  "use_gpu": use_gpu, "debug": logging.getLogger("mega_pipe").isEnabledFor(logging.DEBUG),
                  # every option but the per-process ones each rank sets itself
                  "options": {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
                              if f.name not in ("parallel", "on_epoch")}}
        for k in ("synopsis_checkpoint", "init"):
            if config["options"].get(k) is not None:
                config["options"][k] = str(Path(config["options"][k]).resolve())
        trainer = TorchTrainer(
            _worker_loop, train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            run_config=RunConfig(storage_path=str(out / ".ray-train"), name="train",
                                 failure_config=FailureConfig(max_failures=max_failures)))
        result = trainer.fit()
        if result.error is not None:
            raise MegaPipeError(f"training on Ray failed: {_first_line(result.error)}")
    finally:
        if started:
            ray.shutdown()
    return {**run_summary(task, out), "workers": workers, "ray": address}


def _first_line(error: BaseException) -> str:
    """The user-facing line of a worker's error (a MegaPipeError's message where there is one)."""
    cause = error
    while cause.__cause__ is not None or getattr(cause, "cause", None) is not None:
        cause = cause.__cause__ or cause.cause
        if isinstance(cause, MegaPipeError):
            return str(cause)
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__

