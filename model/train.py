"""Training of MEGA: ``mega-pipe train`` (the loop; the tasks are ``tasks.py``).

The loop knows nothing about scenes or acts: the task object (:func:`tasks.task_for`, chosen
once) checks the labels, builds the samples, gives each batch's losses and validates, and its
hooks do any set-up of its own (an act run's synopsis teacher). The loop
does the rest: config and settings first (before any data is read), data and models, optimiser
and schedule from the config's ``train`` section (``config.py``), epochs, the best epoch on the
``val`` split by the task's selection metric, checkpoints (``checkpoint.py``) and the metrics log.

Resuming: ``last.pt`` holds model, optimiser, scheduler, the torch RNG state and the metric
history after every epoch. Per-epoch shuffling is seeded by (seed, epoch), so a resumed run
repeats exactly what the uninterrupted run would have done (on the same device).

``mega-pipe eval`` is ``evaluate.py``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..manifests.atomic import check_output_dir, write_text
from ..manifests.errors import MegaPipeError
from ..manifests.schema import MovieEntry, read_manifest
from .checkpoint import (
    build_models,
    checkpoint_state,
    describe_checkpoint,
    read_checkpoint,
    save_checkpoint,
    stored_config,
)
from .config import MegaConfig, TrainConfig, load_config, synopsis_model_config
from .data import Normalizer, check_feature_dims, check_sentence_dims, choose_modalities
from .device import resolve_device, rng_state, set_rng_state
from .mega import AlignPE, BottleneckTokens, PositionalEncoding, ShotEncoder
from .pretrain import (
    freeze_transferred,
    pretrained_normalizer,
    read_pretrain_checkpoint,
    transfer_encoders,
)
from .tasks import Run, Task, task_for, warn_unless_above_prior

__all__ = ["DataParallel", "TrainOptions", "run_summary", "train"]

log = logging.getLogger(__name__)

CPU_PARAMETER_HINT = 10_000_000   # above this, training on the CPU gets a hint about the small configs


# --- Settings (before any data is read) --------------------------------------------------------


@dataclass
class TrainOptions:
    """How to train, besides the task, the manifest and the run folder.

    ``epochs``/``batch_size``/``lr`` left at None take the config's ``train`` values;
    ``config`` is a packaged config name or a JSON file (None: the task's), whose top-level
    fields ``config_overrides`` replace. With ``resume`` the run's stored config, modalities and
    settings are used (``epochs`` may be raised to train longer; the cosine schedule then
    stretches; resuming a finished run just returns its summary). ``modalities``: None = every
    modality of every training movie. ``on_epoch`` is called with each epoch's metrics record
    once its checkpoints are written. ``synopsis_checkpoint`` (act only): a ``train --task
    synopsis`` checkpoint whose weights initialise the synopsis network (the teacher;
    ``tasks.ActTask.set_teacher``)."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    modalities: Sequence[str] | None = None
    config: str | None = None
    config_overrides: dict[str, Any] | None = None
    synopsis_checkpoint: str | os.PathLike | None = None
    init: str | os.PathLike | None = None   # a `pretrain` checkpoint for the unimodal encoders (pretrain.py)
    freeze_init: bool = False                # and keep them fixed
    progress: bool = True
    on_epoch: Callable[[dict], None] | None = None
    parallel: DataParallel | None = None     # this process's place in a data-parallel group


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel training group (``train --ray --workers N``,
    docs/scale-out.md "Training"). ``torch.distributed`` is set up by the launcher (Ray Train's
    TorchTrainer: gloo on CPU, NCCL on GPU). Every rank holds the whole model and the same data,
    and draws the same batch order (seeded by (seed, epoch)); each batch is split across the
    ranks, and before every step the gradients are averaged over the batch's samples — what
    ``DistributedDataParallel`` does, done here on one flat buffer so that the tasks' models need
    no wrapper — so every rank takes the same step and the batch size means what it means on one
    process. Rank 0 validates and writes the run's files."""

    rank: int
    world: int
    device: str | None = None       # this rank's device (Ray Train's), else ``--device``

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, index: np.ndarray) -> np.ndarray:
        return index[self.rank :: self.world]

    def average_gradients(self, params: Sequence[torch.nn.Parameter], n_local: int, n_total: int) -> None:
        """Every rank's gradient becomes the batch mean: sum over ranks of (local mean x local
        count) / batch size (a rank with no samples contributes zeros)."""
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads]) * float(n_local)
        dist.all_reduce(flat)
        flat /= float(n_total)
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def gather(self, value: Any) -> list[Any]:
        """``value`` from every rank (small Python objects: per-epoch loss sums)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out


def _given(value: Any, default: Any) -> Any:
    """The caller's value unless it was left out (0 is a value, not "left out")."""
    return default if value is None else value


def _settings(task: str, out: Path, options: TrainOptions) -> tuple[dict | None, MegaConfig, dict]:
    """last.pt's state (None for a new run), the config and the run's hyper-parameters
    (modalities and val split come with the data), checked."""
    state = None
    if options.resume:
        state = _resume_state(out / "last.pt", task)
        cfg = stored_config(state, out / "last.pt")
        settings = dict(state["settings"], epochs=int(_given(options.epochs, state["settings"]["epochs"])))
    else:
        cfg, settings = _new_settings(task, out, options)
    _check_settings(settings)
    return state, cfg, settings


def _new_settings(task: str, out: Path, options: TrainOptions) -> tuple[MegaConfig, dict]:
    """The config and the hyper-parameters of a new run."""
    if (out / "last.pt").exists():
        raise MegaPipeError(f"{out} already holds a run (last.pt); use --resume or another --out")
    cfg = load_config(options.config or task, task, **(options.config_overrides or {}))
    if task == "synopsis" and cfg.task == "act":
        # The teacher of an act run (``--synopsis-checkpoint``): the act config's synopsis
        # network, C × M wide for the act run's M modalities (Tab. 1b synopsis column).
        if not options.modalities:
            raise MegaPipeError(f"--task synopsis with the act config {options.config!r}: name the act run's "
                                "modalities (--modalities a,b,...); its synopsis network is the act width "
                                "times their number")
        cfg = synopsis_model_config(cfg, len(options.modalities))
    if cfg.task != task:
        raise MegaPipeError(f"the config is for task {cfg.task!r}, not {task!r}")
    settings = {
        "epochs": int(_given(options.epochs, cfg.train.epochs)),
        "batch_size": int(_given(options.batch_size, cfg.train.batch_size)),
        "lr": float(_given(options.lr, cfg.train.lr)),
        "seed": int(options.seed),
    }
    return cfg, settings


def _resume_state(last_path: Path, task: str) -> dict:
    if not last_path.is_file():
        raise MegaPipeError(f"--resume: {last_path} does not exist")
    state = read_checkpoint(last_path)
    if state["task"] != task or "resume" not in state:
        raise MegaPipeError(f"--resume: {last_path} is not a {task!r} mega-pipe run")
    return state


def _check_settings(settings: dict) -> None:
    if settings["epochs"] < 1 or settings["batch_size"] < 1 or settings["lr"] <= 0:
        raise MegaPipeError("epochs and batch size must be at least 1 and the learning rate positive")


# --- Data and models ---------------------------------------------------------------------------


def _split(entries: Sequence[MovieEntry], split: str) -> list[MovieEntry]:
    return [e for e in entries if e.split == split]


def _entries(manifest: str | os.PathLike, task: Task, settings: dict, modalities: Sequence[str] | None,
             new_run: bool) -> list[MovieEntry]:
    """The manifest's movies; a new run also picks its modalities and validation split here."""
    entries = read_manifest(manifest)
    if not _split(entries, "train"):
        raise MegaPipeError(f"{manifest} has no movie with split 'train'")
    if new_run:
        has_val = bool(_split(entries, "val"))
        if not has_val:
            log.warning("the manifest has no 'val' split: validating (and picking the best epoch) on train")
        settings["modalities"] = choose_modalities(_split(entries, "train"), modalities) if task.uses_shots else []
        settings["val_split"] = "val" if has_val else "train"
    return entries


def _prepare(task: Task, cfg: MegaConfig, entries: Sequence[MovieEntry], settings: dict,
             normalizer_state: dict | None, device: torch.device, init: dict | None = None) -> Run:
    """Load and normalise the data, build the models (weights are loaded by the caller)."""
    modalities = settings["modalities"]
    synopsis = task.uses_synopsis
    train_movies = task.load(_split(entries, "train"), modalities)
    val_movies = task.load(_split(entries, settings["val_split"]), modalities)
    modality_dims = {m: int(train_movies[0].features[m].shape[1]) for m in modalities}
    sentence_dim = int(train_movies[0].synopsis.shape[1]) if synopsis else None
    check_feature_dims([*train_movies, *val_movies], modality_dims)
    check_sentence_dims([*train_movies, *val_movies], sentence_dim)
    task.check_training_labels(cfg, [*train_movies, *val_movies])
    if normalizer_state is None:
        normalizer = Normalizer.fit(train_movies, modalities, synopsis=synopsis)
        if init is not None:   # the pretrained encoders' input transform (pretrain.py)
            _check_init_inputs(init, modality_dims, f"--init {settings['init']}")
            normalizer = pretrained_normalizer(normalizer, init, modalities)
    else:   # a resumed run's model takes the inputs it was trained on
        normalizer = Normalizer.from_state(normalizer_state)
        normalizer.check([*train_movies, *val_movies], "--resume: ")
    for movie in (*train_movies, *val_movies):
        normalizer.apply(movie)
    torch.manual_seed(settings["seed"])  # identical initial weights for identical settings
    model, synopsis_model = build_models(cfg, modality_dims, sentence_dim)
    model.to(device)
    if synopsis_model is not None:
        synopsis_model.to(device)
    run = Run(cfg, settings, modality_dims, sentence_dim, normalizer, train_movies, val_movies,
              model, synopsis_model, device)
    task.prepare(run)
    return run


def _check_init_inputs(init: dict, modality_dims: dict[str, int], what: str) -> None:
    """The pretrained encoders of ``init`` take this run's modalities at their dimensions (checked
    before their input statistics replace the run's); else one line."""
    dims = init["modality_dims"]
    for m, have in modality_dims.items():
        if m not in dims:
            raise MegaPipeError(f"{what}: pretrained on modalities {', '.join(dims)}; this run uses {m!r}")
        if dims[m] != have:
            raise MegaPipeError(f"{what}: modality {m} was pretrained on {dims[m]}-d features, this run's "
                                f"are {have}-d")


def _restore(run: Run, state: dict) -> None:
    """The weights of a resumed run, from last.pt's state."""
    run.model.load_state_dict(state["model"])
    if run.synopsis_model is not None:
        run.synopsis_model.load_state_dict(state["synopsis_model"])


def _cpu_hint(run: Run, task: str) -> None:
    n_params = sum(p.numel() for p in run.parameters())
    if run.device.type == "cpu" and n_params > CPU_PARAMETER_HINT:
        log.warning("training a %.1fM-parameter model on the CPU is slow (the paper configs are sized "
                    "for a GPU); --config %s-small trains in minutes", n_params / 1e6, task)


# --- Optimiser and schedule ------------------------------------------------------------------


# Parameters that are not weight-decayed: LayerNorm gains (and every bias), the regular PE and
# Align.PE tables, the bottleneck tokens and the missing-modality embeddings. Decay pulls a
# weight towards 0; for these, 0 is not "simpler" but a different model (a LayerNorm gain of 0
# silences its channels; a positional or token embedding of 0 erases what it marks).
NO_DECAY_MODULES = (torch.nn.LayerNorm, PositionalEncoding, AlignPE, BottleneckTokens)


def no_decay_names(modules: Sequence[torch.nn.Module]) -> set[str]:
    """Qualified names (``"<i>.<name>"``, i = the module's place in ``modules``) of the
    parameters that get no weight decay: biases, LayerNorm gains, PE/Align.PE tables,
    bottleneck tokens, the shot encoders' missing embeddings and the TP position heads."""
    names = set()
    for i, root in enumerate(modules):
        for module_name, module in root.named_modules():
            prefix = f"{i}.{module_name}." if module_name else f"{i}."
            for name, _ in module.named_parameters(recurse=False):
                if name in ("bias", "position_bias") or isinstance(module, NO_DECAY_MODULES) or (
                        isinstance(module, ShotEncoder) and name == "missing"):
                    names.add(prefix + name)
    return names


def parameter_groups(modules: Sequence[torch.nn.Module], weight_decay: float) -> list[dict]:
    """Two optimiser groups: the decayed weights (linear and attention matrices) and the rest
    (:func:`no_decay_names`) with weight decay 0. Every parameter is in exactly one group."""
    skip = no_decay_names(modules)
    decay, keep = [], []
    for i, root in enumerate(modules):
        for name, param in root.named_parameters():
            (keep if f"{i}.{name}" in skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def _optimizer(run: Run, lr: float) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}   # config.py checks the name
    modules = [run.model] + ([run.synopsis_model] if run.synopsis_model is not None else [])
    return kinds[run.cfg.train.optimizer](parameter_groups(modules, run.cfg.train.weight_decay), lr=lr)


def _scheduler(opt: torch.optim.Optimizer, train: TrainConfig, steps_per_epoch: int,
               epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``train.warmup_epochs`` then cosine decay to 0 (or constant)."""
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(train.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if train.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# --- Epochs ----------------------------------------------------------------------------------


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def train_epoch(task: Task, run: Run, epoch: int, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LambdaLR, progress: bool = False,
                parallel: DataParallel | None = None) -> dict:
    """One pass over the training samples; returns mean losses, samples, samples/s and seconds.
    With ``parallel``, this rank's share of every batch (:class:`DataParallel`)."""
    run.set_train(True)
    rng = np.random.default_rng([run.settings["seed"], epoch])
    pool = task.training_pool(run)
    batches = _batches(rng.permutation(pool), run.settings["batch_size"])
    if parallel is not None:      # this rank's dropout stream, the same again when resumed
        torch.manual_seed(int(np.random.default_rng([run.settings["seed"], epoch, parallel.rank + 1])
                              .integers(2**62)))
    totals: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"{task.name} epoch {epoch + 1}/{run.settings['epochs']}", file=sys.stderr,
               disable=not progress or None, leave=False, unit="batch")   # None: no bar unless a terminal
    for step, index in enumerate(bar):
        local = index if parallel is None else parallel.shard(index)
        opt.zero_grad(set_to_none=True)
        if len(local):
            losses = task.step_loss(run, local, epoch + step / len(batches))
            losses["loss"].backward()
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) * len(local)
            bar.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
        if parallel is not None:
            parallel.average_gradients(run.parameters(), len(local), len(index))
        if run.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.parameters(), run.cfg.train.grad_clip)
        opt.step()
        sched.step()
    if parallel is not None:
        gathered, totals = parallel.gather(totals), {}
        for part in gathered:
            for k, v in part.items():
                totals[k] = totals.get(k, 0.0) + v
    seconds = time.perf_counter() - start
    return {
        "losses": {k: v / len(pool) for k, v in totals.items()},
        "samples_per_s": len(pool) / seconds,
        "seconds": seconds,
        "samples": int(len(pool)),
    }


def _epoch_record(epoch: int, lr: float, stats: dict, val: dict, improved: bool, settings: dict,
                  seconds: float) -> dict:
    """One line of metrics.jsonl."""
    metric, value = val["select"]
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train": stats["losses"],
        "train_samples": stats["samples"],
        "samples_per_s": stats["samples_per_s"],
        "train_seconds": stats["seconds"],
        "val_split": settings["val_split"],
        "val": val["metrics"],
        "select": {"metric": metric, "value": value, "best": improved},
        "seconds": seconds,
    }


def _state(run: Run, epoch: int, val_metrics: dict) -> dict:
    """The checkpoint of ``run`` as it is now, after ``epoch`` epochs."""
    return checkpoint_state(run.cfg, run.modality_dims, run.sentence_dim, run.normalizer, run.model,
                            run.synopsis_model, epoch, val_metrics, run.settings)


def _fit(task: Task, run: Run, out: Path, state: dict | None, options: TrainOptions) -> tuple[list[dict], dict]:
    """The epochs after those of ``state`` (a resumed run's last.pt; None: all of them); returns
    the history and the best epoch."""
    settings = run.settings
    steps_per_epoch = math.ceil(len(task.training_pool(run)) / settings["batch_size"])
    opt = _optimizer(run, settings["lr"])
    sched = _scheduler(opt, run.cfg.train, steps_per_epoch, settings["epochs"])
    history: list[dict] = []
    best = {"epoch": None, "metric": None, "value": -math.inf}
    if state is not None:
        resume = state["resume"]
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        set_rng_state(resume["rng"], run.device)
        history, best = resume["history"], resume["best"]
    else:
        torch.manual_seed(settings["seed"] + 1)  # dropout stream, independent of init
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(0 if state is None else state["epoch"], settings["epochs"]):
        record, best = _epoch(task, run, out, epoch, opt, sched, history, best, options)
        if options.on_epoch is not None:
            options.on_epoch(record)
    return history, best


def _epoch(task: Task, run: Run, out: Path, epoch: int, opt: torch.optim.Optimizer,
           sched: torch.optim.lr_scheduler.LambdaLR, history: list[dict], best: dict,
           options: TrainOptions) -> tuple[dict, dict]:
    """One epoch: train, validate, then best.pt (if it improved), last.pt and metrics.jsonl.
    Appends its record to ``history``; returns the record and the best epoch so far. In a
    data-parallel group only rank 0 validates and writes (the others return ``{"epoch": n}``)."""
    settings, parallel, progress = run.settings, options.parallel, options.progress
    t0 = time.perf_counter()
    stats = train_epoch(task, run, epoch, opt, sched, progress, parallel)
    if parallel is not None and not parallel.main:
        return {"epoch": epoch + 1}, best
    val = task.validate(run)
    metric, value = val["select"]
    improved = value > best["value"]
    record = _epoch_record(epoch, sched.get_last_lr()[0], stats, val, improved, settings,
                           time.perf_counter() - t0)
    history.append(record)
    state = _state(run, epoch + 1, val["metrics"])
    if improved:
        best = {"epoch": epoch + 1, "metric": metric, "value": value}
        save_checkpoint(out / "best.pt", state)
    state["resume"] = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "rng": rng_state(run.device), "history": history, "best": best}
    save_checkpoint(out / "last.pt", state)
    write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    tqdm.write(f"{task.name} epoch {epoch + 1}/{settings['epochs']}: loss {stats['losses']['loss']:.4f}, "
               f"val {metric} {value:.4f}{' (best)' if improved else ''}, "
               f"{stats['samples_per_s']:.1f} samples/s", file=sys.stderr)   # with or without the bars
    return record, best


# --- Public API ------------------------------------------------------------------------------


def train(task: str, manifest: str | os.PathLike, out: str | os.PathLike,
          options: TrainOptions | None = None) -> dict:
    """Train a MEGA model for ``task`` ("scene" | "act" | "synopsis") on a manifest; write the
    run to ``out``: ``best.pt`` (best validation epoch), ``last.pt`` (for ``options.resume``)
    and ``metrics.jsonl`` (one line per epoch). The config is checked before any data is read.
    Returns a summary: best epoch, its validation metrics, paths, samples/s."""
    options = options or TrainOptions()
    out = check_output_dir(out, "--out")
    job = task_for(task)
    parallel = options.parallel
    device = torch.device(parallel.device if parallel is not None and parallel.device
                          else resolve_device(options.device))
    state, cfg, settings = _settings(task, out, options)
    job.set_teacher(options.synopsis_checkpoint, options.resume, settings)
    init = _read_init(task, options, state, settings)
    entries = _entries(manifest, job, settings, options.modalities, new_run=state is None)
    run = _prepare(job, cfg, entries, settings, None if state is None else state["normalization"], device, init)
    if init is not None:
        settings["init_transfer"] = transfer_encoders(run.model, init, f"--init {options.init}",
                                                      settings["freeze_init"])
    if state is not None:
        _restore(run, state)
        if settings.get("freeze_init"):
            freeze_transferred(run.model, settings["init_transfer"]["left_initialised"])
    settings["workers"] = 1 if parallel is None else parallel.world
    job.start(run, resumed=state is not None)
    _cpu_hint(run, task)
    history, best = _fit(job, run, out, state, options)
    if parallel is not None and not parallel.main:
        return {"task": task, "rank": parallel.rank}
    summary = _summary(task, out, settings, history, best, run.cfg)
    warn_unless_above_prior(summary["best_val"], f"best epoch {best['epoch']} on validation")
    return summary


def _read_init(task: str, options: TrainOptions, state: dict | None, settings: dict) -> dict | None:
    """``--init`` (a ``mega-pipe pretrain`` checkpoint, read before any data) for a new run;
    a resumed run keeps its weights and its ``--freeze-init`` from last.pt."""
    if options.init is None:
        if options.freeze_init and state is None:
            raise MegaPipeError("--freeze-init needs --init (the pretrained encoders to freeze)")
        return None
    if state is not None:
        raise MegaPipeError("--init starts a run; a resumed run has its weights in last.pt")
    if task == "synopsis":
        raise MegaPipeError("--init initialises MEGA's shot encoders; task synopsis has none")
    init = read_pretrain_checkpoint(options.init, f"--init {options.init}")
    settings["init"], settings["freeze_init"] = str(options.init), bool(options.freeze_init)
    return init


def run_summary(task: str, out: str | os.PathLike) -> dict:
    """The summary of the run in ``out``, read from its last.pt (what :func:`train` returned)."""
    last = Path(out) / "last.pt"
    state = _resume_state(last, task)
    return _summary(task, Path(out), state["settings"], state["resume"]["history"],
                    state["resume"]["best"], stored_config(state, last))


def _summary(task: str, out: Path, settings: dict, history: list[dict], best: dict,
             cfg: MegaConfig) -> dict:
    best_val = next(r["val"] for r in history if r["epoch"] == best["epoch"])
    return {
        "task": task,
        "model": describe_checkpoint(cfg, best["epoch"]),
        "run": str(out),
        "best_checkpoint": str(out / "best.pt"),
        "last_checkpoint": str(out / "last.pt"),
        "metrics_log": str(out / "metrics.jsonl"),
        "epochs": settings["epochs"],
        "best_epoch": best["epoch"],
        "select_metric": best["metric"],
        "best_val": best_val,
        "val_split": settings["val_split"],
        "modalities": settings["modalities"],
        "samples_per_s": float(np.mean([r["samples_per_s"] for r in history if "samples_per_s" in r])),
    }
