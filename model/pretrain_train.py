"""``mega-pipe pretrain``: the loop that trains ``pretrain.PretrainModel`` on unlabelled movies.

Data: the manifest's ``train`` movies (labels, if any, are never read); the ``val`` movies, when
there are any, give the validation loss that picks ``best.pt`` (else the training loss does);
``test`` movies are never read. Every folder must come from the same extractor models (a
modality's ``model_id``, weights and dimension agree across folders), and have shots.

Samples: every epoch each movie is cut into ``seq_len``-shot crops in its own order, at a random
offset drawn per (seed, epoch, movie), so every shot is seen once per epoch and crop borders move;
a movie shorter than ``seq_len`` is one sample. Batches pad crops to the longest.

The run folder holds ``best.pt``, ``last.pt`` (with ``resume``: optimiser, schedule, RNG state,
history) and ``metrics.jsonl``, like ``train`` (docs/training.md); a resumed run repeats what the
uninterrupted run would have done on the same device. bf16 autocast on CUDA (``device.autocast``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..manifests.atomic import check_output_dir, write_text
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder
from ..manifests.provenance import code_version
from ..manifests.schema import MovieEntry, read_manifest
from .checkpoint import CHECKPOINT_FORMAT, save_checkpoint, stored_config
from .config import config_to_dict, load_config
from .data import (
    MovieData,
    Normalizer,
    check_feature_dims,
    choose_modalities,
    load_entries,
)
from .device import autocast, resolve_device, rng_state, set_rng_state
from .pretrain import (
    TASK,
    PretrainModel,
    PretrainSettings,
    build_from_state,
    hide_shots,
    read_pretrain_checkpoint,
)
from .train import parameter_groups

__all__ = ["PretrainOptions", "check_model_set", "pretrain"]

log = logging.getLogger(__name__)


@dataclass
class PretrainOptions:
    """``config``: the MEGA config whose encoders are pretrained (packaged name or JSON file;
    its widths, heads, layers, Align.PE bins and dropout; its ``train`` section gives the
    optimiser, weight decay, warm-up, schedule and clipping). ``epochs``/``batch_size``/``lr``
    None: 20 epochs, 4 samples, the config's ``train.lr``."""

    config: str = "scene-small"
    settings: PretrainSettings = field(default_factory=PretrainSettings)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    modalities: Sequence[str] | None = None
    progress: bool = True
    on_epoch: Callable[[dict], None] | None = None


# --- Data ------------------------------------------------------------------------------------


def check_model_set(entries: Sequence[MovieEntry], modalities: Sequence[str]) -> dict[str, dict]:
    """Every folder's ``modalities`` come from the same extractor model (``model_id``, weights
    sha256, dimension): features of two model sets live in different spaces and cannot be
    trained together. Returns the per-modality provenance (kept in the checkpoint)."""
    seen: dict[str, tuple[tuple, str]] = {}
    for entry in entries:
        meta = FeatureFolder(entry.features).modality_meta()
        for m in modalities:
            info = meta.get(m, {})
            key = (info.get("model_id"), info.get("weights_sha256"), info.get("dim"))
            if m not in seen:
                seen[m] = (key, entry.movie_id)
            elif seen[m][0] != key:
                (mid, sha, dim), first = seen[m]
                raise MegaPipeError(
                    f"modality {m}: movie {first} has model {mid} ({dim}-d, weights {str(sha)[:12]}) but "
                    f"movie {entry.movie_id} has {key[0]} ({key[2]}-d, weights {str(key[1])[:12]}); "
                    f"features of different model sets cannot be pretrained together")
    return {m: {"model_id": k[0], "weights_sha256": k[1], "dim": k[2]} for m, (k, _) in seen.items()}


def crops(n_shots: int, seq_len: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """[start, end) crops of ``seq_len`` shots covering the movie once, from a random offset."""
    if n_shots <= seq_len:
        return [(0, n_shots)]
    offset = int(rng.integers(0, seq_len))
    starts = range(offset - seq_len, n_shots, seq_len)
    return [(max(0, s), min(n_shots, s + seq_len)) for s in starts if min(n_shots, s + seq_len) - max(0, s) >= 2]


@dataclass
class CropBatch:
    feats: dict[str, torch.Tensor]    # (B, L, D_m)
    present: dict[str, torch.Tensor]  # (B, L) bool
    mask: torch.Tensor                # (B, L) bool


def pack_crops(movies: Sequence[MovieData], spans: Sequence[tuple[int, int, int]], modalities: Sequence[str],
               device: torch.device) -> CropBatch:
    """(movie index, start, end) crops padded into one batch."""
    length = max(e - s for _, s, e in spans)
    mask = np.zeros((len(spans), length), bool)
    feats = {m: np.zeros((len(spans), length, movies[0].features[m].shape[1]), np.float32) for m in modalities}
    present = {m: np.zeros((len(spans), length), bool) for m in modalities}
    for row, (i, s, e) in enumerate(spans):
        mask[row, : e - s] = True
        for m in modalities:
            feats[m][row, : e - s] = movies[i].features[m][s:e]
            present[m][row, : e - s] = movies[i].presence(m)[s:e]
    return CropBatch({m: torch.from_numpy(v).to(device) for m, v in feats.items()},
                     {m: torch.from_numpy(v).to(device) for m, v in present.items()},
                     torch.from_numpy(mask).to(device))


# --- The run ---------------------------------------------------------------------------------


@dataclass
class _Run:
    model: PretrainModel
    train_movies: list[MovieData]
    val_movies: list[MovieData]
    settings: dict
    device: torch.device


def _epoch_spans(movies: Sequence[MovieData], seq_len: int, seed: int, epoch: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng([seed, epoch, 0x9E7])
    spans = [(i, s, e) for i, mv in enumerate(movies) for s, e in crops(mv.n_shots, seq_len, rng)]
    return [spans[k] for k in rng.permutation(len(spans))]


def _step(run: _Run, movies: Sequence[MovieData], spans, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    batch = pack_crops(movies, spans, run.model.modalities, run.device)
    hidden = hide_shots(batch.mask, batch.present, run.model.settings.mask_ratio, generator)
    with autocast(run.device):
        return run.model.losses(batch.feats, batch.mask, batch.present, hidden)


@torch.no_grad()
def _validate(run: _Run) -> float:
    """Mean loss over the validation movies with a fixed hiding draw (comparable across epochs)."""
    run.model.eval()
    movies = run.val_movies or run.train_movies
    spans = [(i, s, e) for i, mv in enumerate(movies)
             for s, e in crops(mv.n_shots, run.model.settings.seq_len, np.random.default_rng(0))]
    generator = torch.Generator().manual_seed(12345)
    total, count = 0.0, 0
    size = run.settings["batch_size"]
    for k in range(0, len(spans), size):
        part = spans[k:k + size]
        total += float(_step(run, movies, part, generator)["loss"]) * len(part)
        count += len(part)
    return total / max(count, 1)


def _schedule(opt: torch.optim.Optimizer, warmup_epochs: float, kind: str, steps_per_epoch: int,
              epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine to 0 at the last step (or constant): the ``train`` loop's schedule."""
    total, warmup = max(1, steps_per_epoch * epochs), round(warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _state(run: _Run, cfg, normalizer: Normalizer, models: dict, epoch: int, val: float) -> dict:
    dims = run.model.modality_dims
    return {
        "format": CHECKPOINT_FORMAT, "task": TASK, "config": config_to_dict(cfg),
        "pretrain": asdict(run.model.settings), "modalities": list(dims), "modality_dims": dict(dims),
        "sentence_dim": None, "models": models, "normalization": normalizer.state(),
        "model": run.model.state_dict(), "synopsis_model": None, "code_version": code_version(),
        "epoch": epoch, "val": {"loss": val}, "settings": dict(run.settings),
    }


def pretrain(manifest: str | os.PathLike, out: str | os.PathLike, options: PretrainOptions | None = None) -> dict:
    """Pretrain the per-modality encoders of ``options.config`` on the manifest's unlabelled
    ``train`` movies; write ``best.pt``, ``last.pt`` and ``metrics.jsonl`` to ``out``."""
    options = options or PretrainOptions()
    out = check_output_dir(out, "--out")
    device = torch.device(resolve_device(options.device))
    state = None
    if options.resume:
        if not (out / "last.pt").is_file():
            raise MegaPipeError(f"--resume: {out / 'last.pt'} does not exist")
        state = read_pretrain_checkpoint(out / "last.pt", f"--resume {out / 'last.pt'}")
        if "resume" not in state:
            raise MegaPipeError(f"--resume: {out / 'last.pt'} is not a pretraining run's last.pt")
        cfg = stored_config(state, out / "last.pt")
        settings = dict(state["settings"])
        if options.epochs is not None:
            settings["epochs"] = int(options.epochs)
        pre = PretrainSettings(**state["pretrain"])
    else:
        if (out / "last.pt").exists():
            raise MegaPipeError(f"{out} already holds a run (last.pt); use --resume or another --out")
        options.settings.check()
        cfg = load_config(options.config)
        pre = options.settings
        settings = {"epochs": int(options.epochs if options.epochs is not None else 20),
                    "batch_size": int(options.batch_size if options.batch_size is not None else 4),
                    "lr": float(options.lr if options.lr is not None else cfg.train.lr),
                    "seed": int(options.seed), "config": options.config}
    if settings["epochs"] < 1 or settings["batch_size"] < 1 or settings["lr"] <= 0:
        raise MegaPipeError("epochs and batch size must be at least 1 and the learning rate positive")
    entries = read_manifest(manifest)
    train_entries = [e for e in entries if e.split == "train"]
    val_entries = [e for e in entries if e.split == "val"]
    if not train_entries:
        raise MegaPipeError(f"{manifest} has no movie with split 'train' to pretrain on")
    if state is None:
        settings["modalities"] = choose_modalities(train_entries, options.modalities)
    modalities = settings["modalities"]
    models = check_model_set([*train_entries, *val_entries], modalities)
    train_movies = load_entries(train_entries, modalities)
    val_movies = load_entries(val_entries, modalities)
    dims = {m: int(train_movies[0].features[m].shape[1]) for m in modalities}
    check_feature_dims([*train_movies, *val_movies], dims)
    if state is None:
        normalizer = Normalizer.fit(train_movies, modalities)
    else:   # a resumed run's model takes the inputs it was trained on
        normalizer = Normalizer.from_state(state["normalization"])
        normalizer.check([*train_movies, *val_movies], "--resume: ")
    for movie in (*train_movies, *val_movies):
        normalizer.apply(movie)
    torch.manual_seed(settings["seed"])
    model = PretrainModel(cfg, dims, pre).to(device)
    run = _Run(model, train_movies, val_movies, settings, device)
    steps = math.ceil(len(_epoch_spans(train_movies, pre.seq_len, settings["seed"], 0)) / settings["batch_size"])
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    opt = kinds[cfg.train.optimizer](parameter_groups([model], cfg.train.weight_decay), lr=settings["lr"])
    sched = _schedule(opt, cfg.train.warmup_epochs, cfg.train.schedule, steps, settings["epochs"])
    history: list[dict] = []
    best = {"epoch": None, "value": math.inf}
    first = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["resume"]["optimizer"])
        sched.load_state_dict(state["resume"]["scheduler"])
        set_rng_state(state["resume"]["rng"], device)
        history, best, first = state["resume"]["history"], state["resume"]["best"], int(state["epoch"])
    else:
        torch.manual_seed(settings["seed"] + 1)
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(first, settings["epochs"]):
        record, best = _epoch(run, cfg, normalizer, models, out, epoch, opt, sched, history, best, options.progress)
        if options.on_epoch is not None:
            options.on_epoch(record)
    return {"task": TASK, "run": str(out), "best_checkpoint": str(out / "best.pt"),
            "last_checkpoint": str(out / "last.pt"), "metrics_log": str(out / "metrics.jsonl"),
            "config": settings["config"], "pretrain": asdict(pre), "epochs": settings["epochs"],
            "best_epoch": best["epoch"], "best_val_loss": best["value"],
            "val_split": "val" if val_movies else "train", "modalities": modalities,
            "train_movies": len(train_movies), "val_movies": len(val_movies)}


def _epoch(run: _Run, cfg, normalizer, models, out: Path, epoch: int, opt, sched, history: list[dict],
           best: dict, progress: bool) -> tuple[dict, dict]:
    """One epoch: train, validate, best.pt if the validation loss fell, last.pt, metrics.jsonl."""
    settings = run.settings
    t0 = time.perf_counter()
    spans = _epoch_spans(run.train_movies, run.model.settings.seq_len, settings["seed"], epoch)
    size = settings["batch_size"]
    batches = [spans[k:k + size] for k in range(0, len(spans), size)]
    totals: dict[str, float] = {}
    run.model.train()
    bar = tqdm(batches, desc=f"pretrain epoch {epoch + 1}/{settings['epochs']}", file=sys.stderr,
               disable=not progress or None, leave=False, unit="batch")   # None: no bar unless a terminal
    for part in bar:
        losses = _step(run, run.train_movies, part, None)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.train.grad_clip)
        opt.step()
        sched.step()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach()) * len(part)
        bar.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
    val = _validate(run)
    improved = val < best["value"]
    record = {"epoch": epoch + 1, "lr": sched.get_last_lr()[0],
              "train": {k: v / len(spans) for k, v in totals.items()}, "samples": len(spans),
              "val_loss": val, "best": improved, "seconds": time.perf_counter() - t0}
    history.append(record)
    state = _state(run, cfg, normalizer, models, epoch + 1, val)
    if improved:
        best = {"epoch": epoch + 1, "value": val}
        save_checkpoint(out / "best.pt", state)
    state["resume"] = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                       "rng": rng_state(run.device), "history": history, "best": best}
    save_checkpoint(out / "last.pt", state)
    write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    tqdm.write(f"pretrain epoch {epoch + 1}/{settings['epochs']}: loss {record['train'].get('loss', 0):.4f}, "
               f"val loss {val:.4f}{' (best)' if improved else ''}", file=sys.stderr)   # with or without the bars
    return record, best


def load_pretrain(path: str | os.PathLike, device: str = "cpu") -> tuple[PretrainModel, Normalizer, dict]:
    """A pretrain checkpoint's model (eval mode, on ``device``), normaliser and raw state."""
    state = read_pretrain_checkpoint(path, str(path))
    model = build_from_state(state, path).to(torch.device(resolve_device(device)))
    return model, Normalizer.from_state(state["normalization"]), state
