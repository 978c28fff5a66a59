"""Inference from a MEGA checkpoint: scene-boundary probabilities and TP posteriors per shot.

A checkpoint (``checkpoint.py``: format, save, load) and a feature folder (docs/contract.md) are
all inference needs. The forward passes here are shared with training's validation and with
``mega-pipe eval`` (``tasks.py``), so what is validated is exactly what is predicted.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch

from .checkpoint import Checkpoint, check_task, load_checkpoint
from .data import (
    MovieData,
    SceneSamples,
    pack_windows,
    read_movie,
    stitch_windows,
)
from .device import autocast
from .mega import MEGA

__all__ = ["Checkpoint", "load_checkpoint", "scene_probabilities", "act_posteriors", "predict_scene", "predict_act"]

SCENE_INFERENCE_BATCH = 1024  # windows per forward pass; 17-shot windows are small


def _batches(n: int, size: int) -> Iterator[np.ndarray]:
    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size))


@torch.no_grad()
def scene_probabilities(model: MEGA, samples: SceneSamples, device: torch.device) -> np.ndarray:
    """P(shot is the last of its scene) for every window of ``samples`` (centre shot, as in BaSSL)."""
    model.eval()
    centre = samples.windows.shape[1] // 2
    out = []
    for index in _batches(len(samples), SCENE_INFERENCE_BATCH):
        batch = samples.batch(index, device)
        with autocast(device):
            logits = model(batch.feats, batch.mask, present=batch.present).logits[:, centre]
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
        return load_checkpoint(ckpt, task=task)
    check_task(ckpt.task, task, "this")
    return ckpt


def _read(ckpt: Checkpoint, features_dir: str | os.PathLike) -> MovieData:
    """Read the checkpoint's modalities from a feature folder and apply its normalisation; a
    modality the folder lacks is predicted without (missing on every shot, docs/model.md)."""
    return ckpt.normalizer.apply(read_movie(features_dir, ckpt.modalities, dims=ckpt.model.modality_dims))


def predict_scene(ckpt: Checkpoint | str | os.PathLike, features_dir: str | os.PathLike) -> np.ndarray:
    """(n_shots,) probability that each shot is the last shot of a scene."""
    ckpt = _as_checkpoint(ckpt, "scene")
    samples = SceneSamples([_read(ckpt, features_dir)], ckpt.modalities, ckpt.cfg.max_len)
    return scene_probabilities(ckpt.model, samples, ckpt.device)


def predict_act(ckpt: Checkpoint | str | os.PathLike, features_dir: str | os.PathLike) -> np.ndarray:
    """(5, n_shots) TP posteriors: row n is the distribution of turning point n over shots."""
    ckpt = _as_checkpoint(ckpt, "act")
    (posteriors,) = act_posteriors(ckpt.model, [_read(ckpt, features_dir)], ckpt.modalities, ckpt.device)
    return posteriors
