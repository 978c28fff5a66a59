"""Training of MEGA: ``mega-pipe train`` (the loop; the tasks are ``tasks.py``).

The loop knows nothing about scenes or acts: the task object (:func:`tasks.task_for`, chosen
once) checks the labels, builds the samples, gives each batch's losses and validates. The loop
does the rest: config and settings first (before any data is read), data and models, optimiser
and schedule from the config's ``train`` section (``config.py``), epochs, the best epoch on the
``val`` split by the task's selection metric, checkpoints (``checkpoint.py``) and the metrics log.

Resuming: ``last.pt`` holds model, optimiser, scheduler, the torch RNG state and the metric
history after every epoch. Per-epoch shuffling is seeded by (seed, epoch), so a resumed run
repeats exactly what the uninterrupted run would have done (on the same device).

``mega-pipe eval`` is ``evaluate.py``; :func:`evaluate` is importable from here too.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..manifests.atomic import write_text
from ..manifests.errors import MegaPipeError
from ..manifests.schema import MovieEntry, read_manifest
from .checkpoint import (
    build_models,
    checkpoint_state,
    read_checkpoint,
    save_checkpoint,
    stored_config,
)
from .config import (
    SYNOPSIS_ARCHITECTURE,
    MegaConfig,
    TrainConfig,
    load_config,
    synopsis_model_config,
)
from .data import (
    SYNOPSIS_KEY,
    Normalizer,
    check_feature_dims,
    choose_modalities,
)
from .device import resolve_device, rng_state, set_rng_state
from .evaluate import evaluate
from .mega import AlignPE, BottleneckTokens, PositionalEncoding, ShotEncoder
from .tasks import Run, Task, task_for

__all__ = ["train", "evaluate"]

log = logging.getLogger(__name__)

CPU_PARAMETER_HINT = 10_000_000   # above this, training on the CPU gets a hint about the small configs


# --- Settings (before any data is read) --------------------------------------------------------


def _given(value: Any, default: Any) -> Any:
    """The caller's value unless it was left out (0 is a value, not "left out")."""
    return default if value is None else value


def _new_settings(task: str, out: Path, config: str | None, overrides: dict | None, epochs: int | None,
                  batch_size: int | None, lr: float | None, seed: int) -> tuple[MegaConfig, dict]:
    """The config and the run's hyper-parameters (modalities and val split come with the data)."""
    if (out / "last.pt").exists():
        raise MegaPipeError(f"{out} already holds a run (last.pt); use --resume or another --out")
    cfg = load_config(config or task, **(overrides or {}))
    if cfg.task != task:
        raise MegaPipeError(f"the config is for task {cfg.task!r}, not {task!r}")
    settings = {
        "epochs": int(_given(epochs, cfg.train.epochs)),
        "batch_size": int(_given(batch_size, cfg.train.batch_size)),
        "lr": float(_given(lr, cfg.train.lr)),
        "seed": int(seed),
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


def _prepare(task: Task, cfg: MegaConfig, entries: Sequence[MovieEntry], settings: dict,
             normalizer_state: dict | None, device: torch.device) -> Run:
    """Load and normalise the data, build the models (weights are loaded by the caller)."""
    modalities = settings["modalities"]
    synopsis = task.uses_synopsis
    train_movies = task.load(_split(entries, "train"), modalities)
    val_movies = task.load(_split(entries, settings["val_split"]), modalities)
    modality_dims = {m: int(train_movies[0].features[m].shape[1]) for m in modalities}
    check_feature_dims([*train_movies, *val_movies], modality_dims)
    task.check_training_labels(cfg, [*train_movies, *val_movies])
    if normalizer_state is None:
        normalizer = Normalizer.fit(train_movies, modalities, synopsis=synopsis)
    else:
        normalizer = Normalizer.from_state(normalizer_state)
    for movie in (*train_movies, *val_movies):
        normalizer.apply(movie)
    sentence_dim = int(train_movies[0].synopsis.shape[1]) if synopsis else None
    torch.manual_seed(settings["seed"])  # identical initial weights for identical settings
    model, synopsis_model = build_models(cfg, modality_dims, sentence_dim)
    model.to(device)
    if synopsis_model is not None:
        synopsis_model.to(device)
    run = Run(cfg, settings, modality_dims, sentence_dim, normalizer, train_movies, val_movies,
              model, synopsis_model, device)
    task.prepare(run)
    return run


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
                sched: torch.optim.lr_scheduler.LambdaLR, progress: bool = False) -> dict:
    """One pass over the training samples; returns mean losses, samples, samples/s and seconds."""
    run.set_train(True)
    rng = np.random.default_rng([run.settings["seed"], epoch])
    pool = task.training_pool(run)
    batches = _batches(rng.permutation(pool), run.settings["batch_size"])
    totals: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"{task.name} epoch {epoch + 1}/{run.settings['epochs']}", file=sys.stderr,
               disable=not progress, leave=False, unit="batch")
    for step, index in enumerate(bar):
        losses = task.step_loss(run, index, epoch + step / len(batches))
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if run.cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.parameters(), run.cfg.train.grad_clip)
        opt.step()
        sched.step()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach()) * len(index)
        bar.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
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


def _fit(task: Task, run: Run, out: Path, start_epoch: int, resume: dict | None, progress: bool,
         on_epoch: Callable[[dict], None] | None) -> tuple[list[dict], dict]:
    """The epochs from ``start_epoch`` on; returns the history and the best epoch."""
    settings = run.settings
    steps_per_epoch = math.ceil(len(task.training_pool(run)) / settings["batch_size"])
    opt = _optimizer(run, settings["lr"])
    sched = _scheduler(opt, run.cfg.train, steps_per_epoch, settings["epochs"])
    history: list[dict] = []
    best = {"epoch": None, "metric": None, "value": -math.inf}
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        set_rng_state(resume["rng"], run.device)
        history, best = resume["history"], resume["best"]
    else:
        torch.manual_seed(settings["seed"] + 1)  # dropout stream, independent of init
    out.mkdir(parents=True, exist_ok=True)
    if resume is None and settings.get("content_probe"):
        # The model before training is already a fitted read-out (the probe; the MEGA head starts
        # at 0), so it is a candidate too: epoch 0 in metrics.jsonl, best.pt if no epoch beats it.
        val = task.validate(run)
        metric, value = val["select"]
        history.append({"epoch": 0, "val_split": settings["val_split"], "val": val["metrics"],
                        "select": {"metric": metric, "value": value, "best": True}})
        best = {"epoch": 0, "metric": metric, "value": value}
        save_checkpoint(out / "best.pt", _state(run, 0, val["metrics"]))
    for epoch in range(start_epoch, settings["epochs"]):
        t0 = time.perf_counter()
        stats = train_epoch(task, run, epoch, opt, sched, progress)
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
        if progress:
            tqdm.write(f"{task.name} epoch {epoch + 1}/{settings['epochs']}: loss {stats['losses']['loss']:.4f}, "
                       f"val {metric} {value:.4f}{' (best)' if improved else ''}, "
                       f"{stats['samples_per_s']:.1f} samples/s", file=sys.stderr)
        if on_epoch is not None:
            on_epoch(record)
    return history, best


# --- Public API ------------------------------------------------------------------------------


def train(
    task: str,
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    modalities: Sequence[str] | None = None,
    config_overrides: dict[str, Any] | None = None,
    config: str | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    synopsis_checkpoint: str | os.PathLike | None = None,
) -> dict:
    """Train a MEGA model for ``task`` ("scene" | "act") on a manifest; write the run to ``out``.

    Writes ``out/best.pt`` (best validation epoch), ``out/last.pt`` (for ``resume``) and
    ``out/metrics.jsonl`` (one line per epoch). ``epochs``/``batch_size``/``lr`` default to the
    config's ``train`` values. The config is checked before any data is read. With ``resume``
    the run's stored config, modalities and settings are used (``epochs`` may be raised to train
    longer; the cosine schedule then stretches; resuming a finished run just returns its
    summary). ``on_epoch`` is called with each epoch's metrics record once its checkpoints are
    written. ``synopsis_checkpoint`` (act only): a ``train --task synopsis`` checkpoint whose
    weights initialise the synopsis network (the teacher; :func:`load_synopsis_teacher`).
    Returns a summary: best epoch, its validation metrics, paths, samples/s.
    """
    out = Path(out)
    job = task_for(task)
    dev = torch.device(resolve_device(device))
    state = None
    if resume:
        state = _resume_state(out / "last.pt", task)
        cfg = stored_config(state, out / "last.pt")
        settings = dict(state["settings"], epochs=int(_given(epochs, state["settings"]["epochs"])))
    else:
        cfg, settings = _new_settings(task, out, config, config_overrides, epochs, batch_size, lr, seed)
    _check_settings(settings)
    if synopsis_checkpoint is not None:
        if task != "act":
            raise MegaPipeError("--synopsis-checkpoint is for task act (it initialises the act model's "
                                "synopsis network)")
        if resume:
            raise MegaPipeError("--synopsis-checkpoint starts a run; a resumed run has its weights in last.pt")
        teacher = read_checkpoint(synopsis_checkpoint)
        if teacher["task"] != "synopsis":
            raise MegaPipeError(f"{synopsis_checkpoint} is a {teacher['task']!r} checkpoint, not a synopsis one")
        settings["synopsis_checkpoint"] = str(synopsis_checkpoint)
    entries = read_manifest(manifest)
    if not _split(entries, "train"):
        raise MegaPipeError(f"{manifest} has no movie with split 'train'")
    if state is None:
        has_val = bool(_split(entries, "val"))
        if not has_val:
            log.warning("the manifest has no 'val' split: validating (and picking the best epoch) on train")
        settings["modalities"] = choose_modalities(_split(entries, "train"), modalities) if job.uses_shots else []
        settings["val_split"] = "val" if has_val else "train"
    run = _prepare(job, cfg, entries, settings, None if state is None else state["normalization"], dev)
    if synopsis_checkpoint is not None:
        load_synopsis_teacher(run, teacher, synopsis_checkpoint)
    if state is not None:
        run.model.load_state_dict(state["model"])
        if run.synopsis_model is not None:
            run.synopsis_model.load_state_dict(state["synopsis_model"])
    if task == "act" and cfg.content_head and cfg.content_space == "input" and cfg.train.content_probe:
        # fitted once, then fixed (a resumed run keeps it)
        if state is None:
            settings["content_probe"] = job.fit_content_probe(run)
            if settings["content_probe"] is None:
                log.warning("train.content_probe: no training movie has tp_shots, so the content head is not "
                            "fitted (it stays at its initialisation; only shot gold trains it)")
            else:   # the model starts as the prior + the probe
                log.info("content probe fitted: %s", settings["content_probe"])
                torch.nn.init.zeros_(run.model.head.proj.weight)
                torch.nn.init.zeros_(run.model.head.proj.bias)
        if settings.get("content_probe"):
            run.model.content_head.requires_grad_(False)
    n_params = sum(p.numel() for p in run.parameters())
    if dev.type == "cpu" and n_params > CPU_PARAMETER_HINT:
        log.warning("training a %.1fM-parameter model on the CPU is slow (the paper configs are sized "
                    "for a GPU); --config %s-small trains in minutes", n_params / 1e6, task)
    history, best = _fit(job, run, out, 0 if state is None else state["epoch"],
                         None if state is None else state["resume"], progress, on_epoch)
    return _summary(task, out, settings, history, best)


def load_synopsis_teacher(run: Run, teacher: dict, origin: str | os.PathLike) -> None:
    """Initialise an act run's synopsis network from a synopsis checkpoint's state.

    The act config's synopsis network (``config.synopsis_model_config``: its synopsis section
    at width C·M) must have the teacher's architecture and sentence size; otherwise one line
    lists what differs. The teacher's synopsis normalisation replaces the one fitted on the act
    movies, so the network sees its inputs on the scale it was trained on (the checkpoint of
    the act run stores it)."""
    mine = synopsis_model_config(run.cfg, len(run.modality_dims))
    theirs = stored_config(teacher, origin)
    diffs = [f"{k} {getattr(theirs, k)!r} vs {getattr(mine, k)!r}" for k in SYNOPSIS_ARCHITECTURE
             if getattr(theirs, k) != getattr(mine, k)]
    if teacher["sentence_dim"] != run.sentence_dim:
        diffs.append(f"sentence_dim {teacher['sentence_dim']} vs {run.sentence_dim}")
    if diffs:
        raise MegaPipeError(f"{origin}: its synopsis network does not fit this act config's "
                            f"(teacher vs act, width = act width x {len(run.modality_dims)} modalities): "
                            + "; ".join(diffs))
    run.synopsis_model.load_state_dict(teacher["model"])
    stats = Normalizer.from_state(teacher["normalization"])
    for movie in (*run.train_movies, *run.val_movies):   # undo the act fit, apply the teacher's
        movie.synopsis = movie.synopsis * run.normalizer.std[SYNOPSIS_KEY] + run.normalizer.mean[SYNOPSIS_KEY]
        movie.synopsis = (movie.synopsis - stats.mean[SYNOPSIS_KEY]) / stats.std[SYNOPSIS_KEY]
    run.normalizer.mean[SYNOPSIS_KEY] = stats.mean[SYNOPSIS_KEY]
    run.normalizer.std[SYNOPSIS_KEY] = stats.std[SYNOPSIS_KEY]
    log.info("synopsis network initialised from %s", origin)


def _summary(task: str, out: Path, settings: dict, history: list[dict], best: dict) -> dict:
    best_val = next(r["val"] for r in history if r["epoch"] == best["epoch"])
    return {
        "task": task,
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
