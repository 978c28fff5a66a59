"""Checkpoints: the one place that knows their format, writes them and reads them back.

A checkpoint (``RUN/best.pt``, ``RUN/last.pt``) is self-contained: config, modality names and
input dimensions, feature normalisation, task and code version travel with the weights, so a
feature folder (docs/contract.md) and the checkpoint are all inference needs. Keys:

``format``, ``task``, ``config`` (``config_to_dict``), ``modalities`` (ordered), ``modality_dims``,
``sentence_dim`` (act: the synopsis vector size, else None), ``normalization``
(``Normalizer.state()``), ``model`` and ``synopsis_model`` (state dicts; the latter None for
scene), ``code_version``, ``epoch``, ``val`` (validation metrics of that epoch), ``settings``
(the training hyper-parameters). ``last.pt`` adds ``resume`` (optimizer, scheduler, RNG, history).
Only tensors and plain data: ``torch.load(weights_only=True)`` reads them.
"""
from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..manifests.atomic import atomic_path
from ..manifests.errors import MegaPipeError
from ..manifests.provenance import code_version
from .config import MegaConfig, checkpoint_config, config_to_dict, describe_model
from .data import Normalizer
from .device import resolve_device
from .mega import MEGA, SynopsisModel

CHECKPOINT_FORMAT = "mega-pipe-checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint, models in eval mode on ``device``."""

    task: str
    cfg: MegaConfig
    modalities: list[str]
    normalizer: Normalizer
    model: MEGA | SynopsisModel  # task "synopsis": the synopsis network
    synopsis_model: SynopsisModel | None
    device: torch.device
    info: dict  # epoch, val metrics, settings, code_version, modality_dims, sentence_dim


def build_models(cfg: MegaConfig, modality_dims: dict[str, int],
                 sentence_dim: int | None) -> tuple[MEGA | SynopsisModel, SynopsisModel | None]:
    """The shot model, plus the synopsis model when the config has one (act, supp. Sec. 4-5: two
    networks); for task "synopsis" the synopsis model alone (as the model, no second network).
    A module's ValueError (e.g. a modality name with a '.') becomes a MegaPipeError."""
    try:
        if cfg.task == "synopsis":   # the synopsis network alone is the model (no shots)
            return SynopsisModel(cfg, sentence_dim), None
        model = MEGA(cfg, modality_dims)
        synopsis = None if cfg.synopsis is None else SynopsisModel(cfg, sentence_dim, len(modality_dims))
    except ValueError as exc:
        raise MegaPipeError(f"cannot build the {cfg.task} model: {exc}") from None
    return model, synopsis


def checkpoint_state(cfg: MegaConfig, modality_dims: dict[str, int], sentence_dim: int | None,
                     normalizer: Normalizer, model: MEGA, synopsis_model: SynopsisModel | None,
                     epoch: int, val: dict, settings: dict) -> dict:
    """Everything a checkpoint holds (without ``resume``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "task": cfg.task,
        "config": config_to_dict(cfg),
        "modalities": list(modality_dims),
        "modality_dims": dict(modality_dims),
        "sentence_dim": sentence_dim,
        "normalization": normalizer.state(),
        "model": model.state_dict(),
        "synopsis_model": None if synopsis_model is None else synopsis_model.state_dict(),
        "code_version": code_version(),
        "epoch": epoch,
        "val": val,
        "settings": dict(settings),
    }


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write atomically: a crash leaves the previous file, never half of a new one."""
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw state of a mega-pipe checkpoint (on the CPU); MegaPipeError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise MegaPipeError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():   # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler's and zip reader's errors say nothing to a user
        raise MegaPipeError(f"{path} is not a mega-pipe checkpoint ({_unreadable(path, exc)})") from None
    found = state.get("format") if isinstance(state, dict) else None
    if found != CHECKPOINT_FORMAT:
        why = (f"a PyTorch file of format {found!r}, not {CHECKPOINT_FORMAT!r}" if isinstance(found, str)
               else "a PyTorch file, but no mega-pipe training run wrote it")
        raise MegaPipeError(f"{path} is not a mega-pipe checkpoint ({why})")
    return state


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` could not read ``path``, in words: what the file's first bytes say it
    is (a PyTorch file is a zip archive, or a pickle in the legacy format)."""
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or exc}"
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive that torch cannot read: damaged, truncated or not a PyTorch file"
    if not head.startswith(b"\x80"):   # a pickle of protocol 2 or later, as torch's legacy format
        return "not a PyTorch file"
    if isinstance(exc, pickle.UnpicklingError):  # foreign objects (code), never loaded
        return "not a file of tensors and plain data that torch.load reads safely"
    return "a damaged or truncated PyTorch file"


def stored_config(state: dict, path: str | os.PathLike) -> MegaConfig:
    """The config a checkpoint was trained with (keys retired since are dropped)."""
    return checkpoint_config(state["config"], f"checkpoint {path}")


def load_checkpoint(path: str | os.PathLike, device: str = "cpu", task: str | None = None,
                    what: str | None = None) -> Checkpoint:
    """Rebuild the models of a checkpoint from its own config; MegaPipeError if unusable, or
    if ``task`` is given and the checkpoint is of another task (``what`` names it in the
    message, e.g. ``--scene-checkpoint runs/x.pt``)."""
    state = read_checkpoint(path)
    if state["task"] == "pretrain":   # encoders only (model/pretrain.py): no task head to predict with
        raise MegaPipeError(f"{what or path} is a `mega-pipe pretrain` checkpoint (encoders, no task head): "
                            "use it with `train --init` or `embed`")
    check_task(state["task"], task, what or str(path))
    cfg = stored_config(state, path)
    dev = torch.device(resolve_device(device))
    model, synopsis = build_models(cfg, state["modality_dims"], state["sentence_dim"])
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    if synopsis is not None:
        synopsis.load_state_dict(state["synopsis_model"])
        synopsis.to(dev).eval()
    info = {k: state[k] for k in ("epoch", "val", "settings", "code_version", "modality_dims", "sentence_dim")}
    return Checkpoint(
        task=state["task"],
        cfg=cfg,
        modalities=list(state["modalities"]),
        normalizer=Normalizer.from_state(state["normalization"]),
        model=model,
        synopsis_model=synopsis,
        device=dev,
        info=info,
    )


def check_task(found: str, expected: str | None, what: str) -> None:
    """The one check that a checkpoint is of the task it is used for."""
    if expected is not None and found != expected:
        raise MegaPipeError(f"{what} is a checkpoint of task {found!r}, not {expected!r}")


def describe_checkpoint(cfg, epoch: int) -> dict:
    """What produced a checkpoint's predictions, for every report that uses it (train's summary,
    eval JSON, boundaries.json ``methods``): the model's name and its additions/departures
    (``config.describe_model``), the epoch, and whether any training step was taken (epoch 0,
    the model before training, is never saved as a candidate since issue 19; a checkpoint
    written before that may still carry it)."""
    return {**describe_model(cfg), "epoch": epoch, "trained": epoch > 0}
