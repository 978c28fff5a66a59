"""Training and evaluation of MEGA: ``mega-pipe train`` and ``mega-pipe eval``.

Scene segmentation (spec §1.3): every labelled shot is a sample, its 17-shot clipped window
is the input and the class-balanced cross-entropy (§5 #6) is taken on the centre shot.

Act segmentation (spec §1.4): a batch is a few whole movies. Per movie:

1. the shot model gives TP logits Y and shot embeddings u_i (long movies: overlapping windows,
   averaged, ``data.py``); the synopsis model gives sentence TP logits and embeddings v_j;
2. **E-step**: W from the current, detached cosine similarities of u and v inside the diagonal
   band |i/L_sh − j/L_syn| < ξ, thresholded at a per-movie quantile (§1.4a, §5 #7);
3. **M-step**: multi-positive InfoNCE on W (``sync``, §5 #8);
4. **distillation** of the gold one-hot synopsis TP labels q through the shot↔sentence
   attention into the shot logits (``distill``, Eq. 5–8, §5 #9–10);
5. the synopsis model's own TP cross-entropy on the gold sentence labels (``synopsis``, §5 #9);
6. when the manifest has shot-level gold (``tp_shots``) for the movie, also a direct per-TP
   cross-entropy of the shot logits (``shot_tp``).

The loss weights come from the config's ``train.loss_weights`` (1 : 1 : 1 default, §5 #11;
``shot_tp`` defaults to 1 too). Optimiser, schedule and epochs come from the config's ``train``
dict and can be overridden per run. The best epoch is chosen on the ``val`` split by AP (scene)
or TA (act, shot-level gold, §5 #17); when no validation movie has shot-level TP gold, by the
validation loss.

Resuming: ``last.pt`` holds model, optimiser, scheduler, the torch RNG state and the metric
history after every epoch. Per-epoch shuffling is seeded by (seed, epoch), so a resumed run
repeats exactly what the uninterrupted run would have done (on the same device).
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
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mega_pipe.manifests.atomic import atomic_path, write_json, write_text
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.provenance import code_version
from mega_pipe.manifests.schema import MovieEntry, read_manifest
from mega_pipe.model.config import MegaConfig, config_to_dict, load_config
from mega_pipe.model.data import (
    UNLABELLED,
    MovieData,
    Normalizer,
    SceneSamples,
    choose_modalities,
    drop_modalities,
    load_entries,
    pack_synopses,
    pack_windows,
    stitch_windows,
    tp_targets,
)
from mega_pipe.model.device import autocast, resolve_device
from mega_pipe.model.losses import (
    balanced_cross_entropy,
    distillation_loss,
    sync_estep,
    sync_mstep_loss,
    tp_cross_entropy,
)
from mega_pipe.model.metrics import act_metrics, scene_metrics
from mega_pipe.model.predict import (
    CHECKPOINT_FORMAT,
    act_posteriors,
    build_models,
    load_checkpoint,
    scene_probabilities,
)
from tqdm import tqdm

log = logging.getLogger(__name__)

SELECT_METRIC = {"scene": "ap", "act": "ta"}
ACT_LOSSES = ("sync", "distill", "synopsis", "shot_tp")
CPU_PARAMETER_HINT = 10_000_000   # above this, training on the CPU gets a hint about the small configs


# --- Run state -------------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything one training run works with (built fresh or restored from last.pt)."""

    task: str
    cfg: MegaConfig
    settings: dict  # epochs, batch_size, lr, seed, modalities, val_split
    modality_dims: dict[str, int]
    sentence_dim: int | None
    normalizer: Normalizer
    train_movies: list[MovieData]
    val_movies: list[MovieData]
    model: torch.nn.Module
    synopsis_model: torch.nn.Module | None
    device: torch.device

    def parameters(self) -> list[torch.nn.Parameter]:
        params = list(self.model.parameters())
        if self.synopsis_model is not None:
            params += list(self.synopsis_model.parameters())
        return params

    def set_train(self, mode: bool) -> None:
        self.model.train(mode)
        if self.synopsis_model is not None:
            self.synopsis_model.train(mode)


def _split(entries: Sequence[MovieEntry], split: str) -> list[MovieEntry]:
    return [e for e in entries if e.split == split]


def _prepare(task: str, cfg: MegaConfig, entries: Sequence[MovieEntry], settings: dict,
             normalizer_state: dict | None, device: torch.device) -> _Run:
    """Load and normalise the data, build the models (weights are loaded by the caller)."""
    modalities = settings["modalities"]
    act = task == "act"
    train_movies = load_entries(_split(entries, "train"), modalities, synopsis=act)
    val_movies = load_entries(_split(entries, settings["val_split"]), modalities, synopsis=act)
    _check_labels(cfg, [*train_movies, *val_movies])
    if normalizer_state is None:
        normalizer = Normalizer.fit(train_movies, modalities, synopsis=act)
    else:
        normalizer = Normalizer.from_state(normalizer_state)
    for movie in (*train_movies, *val_movies):
        normalizer.apply(movie)
    modality_dims = {m: int(train_movies[0].features[m].shape[1]) for m in modalities}
    sentence_dim = int(train_movies[0].synopsis.shape[1]) if act else None
    torch.manual_seed(settings["seed"])  # identical initial weights for identical settings
    model, synopsis = build_models(cfg, modality_dims, sentence_dim)
    model.to(device)
    if synopsis is not None:
        synopsis.to(device)
    return _Run(task, cfg, settings, modality_dims, sentence_dim, normalizer, train_movies, val_movies,
                model, synopsis, device)


def _check_labels(cfg: MegaConfig, movies: Sequence[MovieData]) -> None:
    """Fail before training starts when a movie lacks what its task needs."""
    for movie in movies:
        if cfg.task == "scene" and movie.scene_labels is None:
            raise MegaPipeError(f"scene training needs scene_labels; movie {movie.movie_id} has none")
        if cfg.task == "act":
            if movie.tp_sentences is None:
                raise MegaPipeError(f"act training needs tp_sentences; movie {movie.movie_id} has none")
            if len(movie.synopsis) > cfg.synopsis["max_len"]:
                raise MegaPipeError(
                    f"{movie.movie_id}: synopsis of {len(movie.synopsis)} sentences exceeds the synopsis "
                    f"model's max_len {cfg.synopsis['max_len']} (raise it with a config override)"
                )


# --- Optimiser and schedule ------------------------------------------------------------------


def _optimizer(run: _Run, lr: float) -> torch.optim.Optimizer:
    train = run.cfg.train
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    kind = train.get("optimizer", "adamw")
    if kind not in kinds:
        raise MegaPipeError(f"config train.optimizer must be one of {sorted(kinds)}, got {kind!r}")
    return kinds[kind](run.parameters(), lr=lr, weight_decay=float(train.get("weight_decay", 0.0)))


def _scheduler(opt: torch.optim.Optimizer, cfg: MegaConfig, steps_per_epoch: int, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``train.warmup_epochs`` then cosine decay to 0 (or constant)."""
    schedule = cfg.train.get("schedule", "cosine")
    if schedule not in ("cosine", "constant"):
        raise MegaPipeError(f"config train.schedule must be 'cosine' or 'constant', got {schedule!r}")
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(float(cfg.train.get("warmup_epochs", 0)) * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# --- Losses ----------------------------------------------------------------------------------


def _modality_dropout(run: _Run) -> float:
    """``train.modality_dropout`` while training; 0 in evaluation mode (validation)."""
    return float(run.cfg.train.get("modality_dropout", 0.0)) if run.model.training else 0.0


def _scene_step_loss(run: _Run, samples: SceneSamples, index: np.ndarray) -> dict[str, torch.Tensor]:
    batch = samples.batch(index, run.device)
    centre = samples.windows.shape[1] // 2
    present = drop_modalities(batch.present, _modality_dropout(run))
    with autocast(run.device):
        logits = run.model(batch.feats, batch.mask, batch.positions, present).logits[:, centre]
    loss = balanced_cross_entropy(logits.float(), batch.labels)
    return {"loss": loss}


def _act_step_loss(run: _Run, movies: Sequence[MovieData], epoch: float | None = None) -> dict[str, torch.Tensor]:
    """The act losses of §1.4 for a batch of whole movies, averaged over the movies.

    ``epoch`` (fractional) sets the E-step's diagonal prior (losses.sync_estep): ``sync.prior``,
    annealed linearly to ``sync.prior_final`` over ``sync.prior_epochs`` when that is > 0
    (validation, without an epoch, uses the final value)."""
    train = run.cfg.train
    weights = {"shot_tp": 1.0, **train.get("loss_weights", {})}
    sync_cfg, kd_cfg = train.get("sync", {}), train.get("distill", {})
    prior, ramp = sync_cfg.get("prior", 0.0), sync_cfg.get("prior_epochs", 0)
    if ramp > 0:
        progress = 1.0 if epoch is None else min(1.0, epoch / ramp)
        prior += (sync_cfg.get("prior_final", prior) - prior) * progress
    batch = pack_windows(movies, list(run.modality_dims), run.cfg.max_len, run.device)
    sents, sent_mask = pack_synopses(movies, run.device)
    present = drop_modalities(batch.present, _modality_dropout(run))
    with autocast(run.device):
        out = run.model(batch.feats, batch.mask, batch.positions, present)
        sent_logits, sent_emb = run.synopsis_model(sents, sent_mask)
    shot_logits = stitch_windows(out.logits.float(), batch)
    if sync_cfg.get("space", "fused") == "content":   # synchronise what shots and sentences show
        shot_emb = stitch_windows(run.model.content_embeddings(batch.feats, present).float(), batch)
        sent_emb = run.synopsis_model.content_embeddings(sents)
    else:
        shot_emb = stitch_windows(out.shot_emb.float(), batch)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ACT_LOSSES}
    for i, movie in enumerate(movies):
        n_sent = len(movie.synopsis)
        u, v = shot_emb[i], sent_emb[i, :n_sent].float()
        q = torch.from_numpy(tp_targets(movie.tp_sentences, n_sent, movie.movie_id, "sentence")).to(run.device)
        sim = F.normalize(u.detach(), dim=-1) @ F.normalize(v.detach(), dim=-1).T
        w = sync_estep(sim, movie.n_shots, n_sent, xi=sync_cfg.get("xi", 0.3),
                       quantile=sync_cfg.get("quantile", 0.85), prior=prior)
        parts["sync"].append(sync_mstep_loss(u, v, w, tau=sync_cfg.get("tau", 0.07)))
        parts["distill"].append(
            distillation_loss(shot_logits[i], u, v, q, tau=kd_cfg.get("tau", 1.0),
                              direction=kd_cfg.get("direction", "teacher_student"),
                              cosine=kd_cfg.get("cosine", False), teacher_tau=kd_cfg.get("teacher_tau", 1.0))
        )
        parts["synopsis"].append(tp_cross_entropy(sent_logits[i, :n_sent].float(), q))
        if movie.tp_shots is not None:
            target = tp_targets(movie.tp_shots, movie.n_shots, movie.movie_id, "shot")
            parts["shot_tp"].append(tp_cross_entropy(shot_logits[i], torch.from_numpy(target).to(run.device)))
    losses = {k: torch.stack(v).mean() for k, v in parts.items() if v}
    losses["loss"] = sum(weights[k] * v for k, v in losses.items())
    return losses


# --- Epochs ----------------------------------------------------------------------------------


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _train_epoch(run: _Run, epoch: int, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR,
                 samples: SceneSamples | None, progress: bool) -> dict:
    """One pass over the training samples; returns mean losses, samples/s and seconds."""
    run.set_train(True)
    rng = np.random.default_rng([run.settings["seed"], epoch])
    if run.task == "scene":
        pool = np.flatnonzero(samples.labels != UNLABELLED)
    else:
        pool = np.arange(len(run.train_movies))
    batches = _batches(rng.permutation(pool), run.settings["batch_size"])
    totals: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"{run.task} epoch {epoch + 1}/{run.settings['epochs']}", file=sys.stderr,
               disable=not progress, leave=False, unit="batch")
    for step, index in enumerate(bar):
        if run.task == "scene":
            losses = _scene_step_loss(run, samples, index)
        else:
            losses = _act_step_loss(run, [run.train_movies[i] for i in index], epoch + step / len(batches))
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
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


def _scene_records(model: torch.nn.Module, movies: Sequence[MovieData], align_scope: str, device: torch.device) -> list[dict]:
    """Prediction records in the format of ``metrics.scene_metrics`` / ``mega-pipe score``."""
    modalities = list(model.modalities)
    probs = scene_probabilities(model, SceneSamples(movies, modalities, align_scope == "movie"), device)
    records, offset = [], 0
    for movie in movies:
        labels = None if movie.scene_labels is None else [
            None if y == UNLABELLED else int(y) for y in movie.scene_labels
        ]
        records.append({
            "movie_id": movie.movie_id,
            "prob": probs[offset : offset + movie.n_shots].tolist(),
            "label": labels,
            "shot_frames": movie.shot_frames.tolist(),
        })
        offset += movie.n_shots
    return records


def _act_records(model: torch.nn.Module, movies: Sequence[MovieData], device: torch.device) -> list[dict]:
    """Records for ``metrics.act_metrics``: (5, n_shots) posteriors and shot-level gold."""
    posteriors = act_posteriors(model, movies, list(model.modalities), device)
    return [
        {"movie_id": m.movie_id, "posteriors": p.tolist(), "gold": m.tp_shots}
        for m, p in zip(movies, posteriors)
    ]


@torch.no_grad()
def _validate(run: _Run) -> dict:
    """Validation metrics plus the model-selection value (higher is better)."""
    run.set_train(False)
    movies = run.val_movies
    if run.task == "scene":
        metrics = scene_metrics(_scene_records(run.model, movies, run.cfg.align_scope, run.device))
        return {"metrics": metrics, "select": ("ap", metrics["ap"])}
    with_gold = [m for m in movies if m.tp_shots is not None]
    metrics = act_metrics(_act_records(run.model, with_gold, run.device)) if with_gold else {}
    losses = [_act_step_loss(run, [m]) for m in movies]
    metrics["loss"] = float(np.mean([float(l["loss"]) for l in losses]))
    if with_gold:
        return {"metrics": metrics, "select": ("ta", metrics["ta"])}
    return {"metrics": metrics, "select": ("-loss", -metrics["loss"])}


# --- Checkpoints -----------------------------------------------------------------------------


def _checkpoint(run: _Run, epoch: int, val: dict) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "task": run.task,
        "config": config_to_dict(run.cfg),
        "modalities": list(run.modality_dims),
        "modality_dims": dict(run.modality_dims),
        "sentence_dim": run.sentence_dim,
        "normalization": run.normalizer.state(),
        "model": run.model.state_dict(),
        "synopsis_model": None if run.synopsis_model is None else run.synopsis_model.state_dict(),
        "code_version": code_version(),
        "epoch": epoch,
        "val": val,
        "settings": dict(run.settings),
    }


def _save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# --- Public API ------------------------------------------------------------------------------


def _given(value: Any, default: Any) -> Any:
    """The caller's value unless it was left out (0 is a value, not "left out")."""
    return default if value is None else value


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
) -> dict:
    """Train a MEGA model for ``task`` ("scene" | "act") on a manifest; write the run to ``out``.

    Writes ``out/best.pt`` (best validation epoch), ``out/last.pt`` (for ``resume``) and
    ``out/metrics.jsonl`` (one line per epoch). ``epochs``/``batch_size``/``lr`` default to the
    config's ``train`` values. With ``resume`` the run's stored config, modalities and settings
    are used (``epochs`` may be raised to train longer; the cosine schedule then stretches;
    resuming a finished run just returns its summary). Returns a summary: best epoch, its validation metrics, paths, samples/s.
    """
    out = Path(out)
    last_path, best_path, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"
    dev = torch.device(resolve_device(device))
    entries = read_manifest(manifest)
    if not _split(entries, "train"):
        raise MegaPipeError(f"{manifest} has no movie with split 'train'")
    if resume:
        if not last_path.is_file():
            raise MegaPipeError(f"--resume: {last_path} does not exist")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT or state["task"] != task:
            raise MegaPipeError(f"--resume: {last_path} is not a {task!r} mega-pipe run")
        cfg = MegaConfig(**state["config"])
        settings = dict(state["settings"], epochs=int(_given(epochs, state["settings"]["epochs"])))
        run = _prepare(task, cfg, entries, settings, state["normalization"], dev)
        run.model.load_state_dict(state["model"])
        if run.synopsis_model is not None:
            run.synopsis_model.load_state_dict(state["synopsis_model"])
        resume_state = state["resume"]
        start_epoch = state["epoch"]
    else:
        if last_path.exists():
            raise MegaPipeError(f"{out} already holds a run (last.pt); use --resume or another --out")
        cfg = load_config(config or task, **(config_overrides or {}))
        if cfg.task != task:
            raise MegaPipeError(f"the config is for task {cfg.task!r}, not {task!r}")
        has_val = bool(_split(entries, "val"))
        if not has_val:
            log.warning("the manifest has no 'val' split: validating (and picking the best epoch) on train")
        settings = {
            "epochs": int(_given(epochs, cfg.train.get("epochs", 20))),
            "batch_size": int(_given(batch_size, cfg.train.get("batch_size", 1))),
            "lr": float(_given(lr, cfg.train.get("lr", 1e-4))),
            "seed": int(seed),
            "modalities": choose_modalities(_split(entries, "train"), modalities),
            "val_split": "val" if has_val else "train",
        }
        run = _prepare(task, cfg, entries, settings, None, dev)
        resume_state, start_epoch = None, 0

    if settings["epochs"] < 1 or settings["batch_size"] < 1 or settings["lr"] <= 0:
        raise MegaPipeError("epochs and batch size must be at least 1 and the learning rate positive")
    n_params = sum(p.numel() for p in run.parameters())
    if dev.type == "cpu" and n_params > CPU_PARAMETER_HINT:
        log.warning("training a %.1fM-parameter model on the CPU is slow (the paper configs are sized "
                    "for a GPU); --config %s-small trains in minutes", n_params / 1e6, task)
    samples = None
    if task == "scene":
        samples = SceneSamples(run.train_movies, settings["modalities"], cfg.align_scope == "movie")
        n_samples = int(np.sum(samples.labels != UNLABELLED))
    else:
        n_samples = len(run.train_movies)
    steps_per_epoch = math.ceil(n_samples / settings["batch_size"])
    opt = _optimizer(run, settings["lr"])
    sched = _scheduler(opt, cfg, steps_per_epoch, settings["epochs"])
    history: list[dict] = []
    best = {"epoch": None, "metric": None, "value": -math.inf}
    if resume_state is not None:
        opt.load_state_dict(resume_state["optimizer"])
        sched.load_state_dict(resume_state["scheduler"])
        _set_rng_state(resume_state["rng"], dev)
        history, best = resume_state["history"], resume_state["best"]
    else:
        torch.manual_seed(settings["seed"] + 1)  # dropout stream, independent of init

    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(start_epoch, settings["epochs"]):
        t0 = time.perf_counter()
        stats = _train_epoch(run, epoch, opt, sched, samples, progress)
        val = _validate(run)
        metric, value = val["select"]
        improved = value > best["value"]
        record = {
            "epoch": epoch + 1,
            "lr": sched.get_last_lr()[0],
            "train": stats["losses"],
            "train_samples": stats["samples"],
            "samples_per_s": stats["samples_per_s"],
            "train_seconds": stats["seconds"],
            "val_split": settings["val_split"],
            "val": val["metrics"],
            "select": {"metric": metric, "value": value, "best": improved},
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        checkpoint = _checkpoint(run, epoch + 1, val["metrics"])
        if improved:
            best = {"epoch": epoch + 1, "metric": metric, "value": value}
            _save(best_path, checkpoint)
        checkpoint["resume"] = {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": _rng_state(dev),
            "history": history,
            "best": best,
        }
        _save(last_path, checkpoint)
        write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))
        if progress:
            tqdm.write(
                f"{task} epoch {epoch + 1}/{settings['epochs']}: loss {stats['losses']['loss']:.4f}, "
                f"val {metric} {value:.4f}{' (best)' if improved else ''}, "
                f"{stats['samples_per_s']:.1f} samples/s",
                file=sys.stderr,
            )
    best_val = next(r["val"] for r in history if r["epoch"] == best["epoch"])
    return {
        "task": task,
        "run": str(out),
        "best_checkpoint": str(best_path),
        "last_checkpoint": str(last_path),
        "metrics_log": str(metrics_path),
        "epochs": settings["epochs"],
        "best_epoch": best["epoch"],
        "select_metric": best["metric"],
        "best_val": best_val,
        "val_split": settings["val_split"],
        "modalities": settings["modalities"],
        "samples_per_s": float(np.mean([r["samples_per_s"] for r in history])),
    }


def evaluate(
    checkpoint: str | os.PathLike,
    manifest: str | os.PathLike,
    split: str = "test",
    out: str | os.PathLike | None = None,
    *,
    device: str = "auto",
) -> dict:
    """Score a checkpoint on one split of a manifest.

    Writes ``eval_<task>_<split>.json`` (metrics) and ``predictions_<task>_<split>.jsonl`` (one record per
    movie, the input of ``mega-pipe score``) to ``out`` (default: the checkpoint's folder) and
    returns the metrics with the paths. Act gold is the shot-level ``tp_shots`` (§5 #17).
    """
    ckpt = load_checkpoint(checkpoint, device)
    entries = _split(read_manifest(manifest), split)
    if not entries:
        raise MegaPipeError(f"the manifest has no movie with split {split!r}")
    movies = [ckpt.normalizer.apply(m) for m in load_entries(entries, ckpt.modalities, dims=ckpt.model.modality_dims)]
    if ckpt.task == "scene":
        missing = [m.movie_id for m in movies if m.scene_labels is None]
        if missing:
            raise MegaPipeError(f"cannot score scene boundaries: no scene_labels for {', '.join(missing)}")
        records = _scene_records(ckpt.model, movies, ckpt.cfg.align_scope, ckpt.device)
        metrics = scene_metrics(records)
    else:
        missing = [m.movie_id for m in movies if m.tp_shots is None]
        if missing:
            raise MegaPipeError(f"cannot score turning points: no tp_shots for {', '.join(missing)}")
        records = _act_records(ckpt.model, movies, ckpt.device)
        metrics = act_metrics(records)
    out_dir = Path(out) if out is not None else Path(checkpoint).parent
    stem = f"{ckpt.task}_{split}"   # one --out can hold the evaluations of both tasks
    metrics_path, records_path = out_dir / f"eval_{stem}.json", out_dir / f"predictions_{stem}.jsonl"
    write_text(records_path, "".join(json.dumps(r) + "\n" for r in records))
    result = {
        "task": ckpt.task,
        "split": split,
        "checkpoint": str(checkpoint),
        "epoch": ckpt.info["epoch"],
        "n_movies": len(movies),
        "metrics": metrics,
        "predictions": str(records_path),
    }
    write_json(metrics_path, result)
    return {**result, "eval_json": str(metrics_path)}
