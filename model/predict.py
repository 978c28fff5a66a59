"""Inference from a MEGA checkpoint: scene-boundary probabilities and TP posteriors per shot.

A checkpoint (written by ``train.py``) is self-contained: config, modality names and input
dimensions, feature normalisation, task and code version travel with the weights, so a
feature folder (docs/contract.md) and the checkpoint are all inference needs. Checkpoint keys:

``format``, ``task``, ``config`` (``config_to_dict``), ``modalities`` (ordered), ``modality_dims``,
``sentence_dim`` (act: the synopsis vector size, else None), ``normalization``
(``Normalizer.state()``), ``model`` and ``synopsis_model`` (state dicts; the latter None for
scene), ``code_version``, ``epoch``, ``val`` (validation metrics of that epoch), ``settings``
(the training hyper-parameters). ``last.pt`` adds ``resume`` (optimizer, scheduler, RNG, history).

The forward passes here are shared with training's validation, so what is validated is exactly
what is predicted.
"""
from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.model.config import MegaConfig
from mega_pipe.model.data import (
    MovieData,
    Normalizer,
    SceneSamples,
    pack_windows,
    read_movie,
    stitch_windows,
)
from mega_pipe.model.device import autocast, resolve_device
from mega_pipe.model.mega import MEGA, SynopsisModel

CHECKPOINT_FORMAT = "mega-pipe-checkpoint/1"
SCENE_INFERENCE_BATCH = 1024  # windows per forward pass; 17-shot windows are small


@dataclass
class Checkpoint:
    """A loaded checkpoint, models in eval mode on ``device``."""

    task: str
    cfg: MegaConfig
    modalities: list[str]
    normalizer: Normalizer
    model: MEGA
    synopsis_model: SynopsisModel | None
    device: torch.device
    info: dict  # epoch, val metrics, settings, code_version


def build_models(cfg: MegaConfig, modality_dims: dict[str, int], sentence_dim: int | None) -> tuple[MEGA, SynopsisModel | None]:
    """The shot model, plus the synopsis model for act (spec §1.4: two networks)."""
    model = MEGA(cfg, modality_dims)
    synopsis = SynopsisModel(cfg, sentence_dim, len(modality_dims)) if cfg.task == "act" else None
    return model, synopsis


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> Checkpoint:
    """Rebuild the models of a checkpoint from its own config; MegaPipeError if unusable."""
    path = Path(path)
    if not path.is_file():
        raise MegaPipeError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():   # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # not a pickle, or one holding code objects (never loaded)
        raise MegaPipeError(f"{path} is not a mega-pipe checkpoint (not a file of tensors and "
                            "plain data that torch.load reads safely)") from None
    except Exception as exc:  # zip/EOF errors of a truncated or foreign file: first line only
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MegaPipeError(f"{path} is not a mega-pipe checkpoint ({detail})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise MegaPipeError(f"{path} is not a mega-pipe checkpoint ({CHECKPOINT_FORMAT})")
    cfg = MegaConfig(**state["config"])
    dev = torch.device(resolve_device(device))
    model, synopsis = build_models(cfg, state["modality_dims"], state["sentence_dim"])
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    if synopsis is not None:
        synopsis.load_state_dict(state["synopsis_model"])
        synopsis.to(dev).eval()
    info = {k: state[k] for k in ("epoch", "val", "settings", "code_version")}
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


def _batches(n: int, size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size))


@torch.no_grad()
def scene_probabilities(model: MEGA, samples: SceneSamples, device: torch.device) -> np.ndarray:
    """P(shot is the last of its scene) for every window of ``samples`` (centre shot, §1.3)."""
    model.eval()
    centre = samples.windows.shape[1] // 2
    out = []
    for index in _batches(len(samples), SCENE_INFERENCE_BATCH):
        batch = samples.batch(index, device)
        with autocast(device):
            logits = model(batch.feats, batch.mask, batch.positions, batch.present).logits[:, centre]
        out.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(out).astype(np.float64)


@torch.no_grad()
def act_posteriors(model: MEGA, movies: Sequence[MovieData], modalities: Sequence[str], device: torch.device) -> list[np.ndarray]:
    """Per movie a (5, n_shots) array: for each TP a softmax over the movie's shots (Eq. 7)."""
    model.eval()
    result = []
    for movie in movies:  # one movie per pass: its windows are the batch
        batch = pack_windows([movie], modalities, model.cfg.max_len, device)
        with autocast(device):
            logits = model(batch.feats, batch.mask, batch.positions, batch.present).logits
        (movie_logits,) = stitch_windows(logits.float(), batch)
        result.append(torch.softmax(movie_logits, dim=0).T.cpu().numpy().astype(np.float64))
    return result


def _as_checkpoint(ckpt: Checkpoint | str | os.PathLike, task: str) -> Checkpoint:
    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    if ckpt.task != task:
        raise MegaPipeError(f"this is a {ckpt.task!r} checkpoint, not a {task!r} one")
    return ckpt


def _read(ckpt: Checkpoint, features_dir: str | os.PathLike) -> MovieData:
    """Read the checkpoint's modalities from a feature folder and apply its normalisation; a
    modality the folder lacks is predicted without (missing on every shot, docs/model.md)."""
    return ckpt.normalizer.apply(read_movie(features_dir, ckpt.modalities, dims=ckpt.model.modality_dims))


def predict_scene(ckpt: Checkpoint | str | os.PathLike, features_dir: str | os.PathLike) -> np.ndarray:
    """(n_shots,) probability that each shot is the last shot of a scene."""
    ckpt = _as_checkpoint(ckpt, "scene")
    samples = SceneSamples([_read(ckpt, features_dir)], ckpt.modalities, ckpt.cfg.align_scope == "movie")
    return scene_probabilities(ckpt.model, samples, ckpt.device)


def predict_act(ckpt: Checkpoint | str | os.PathLike, features_dir: str | os.PathLike) -> np.ndarray:
    """(5, n_shots) TP posteriors: row n is the distribution of turning point n over shots."""
    ckpt = _as_checkpoint(ckpt, "act")
    (posteriors,) = act_posteriors(ckpt.model, [_read(ckpt, features_dir)], ckpt.modalities, ckpt.device)
    return posteriors
