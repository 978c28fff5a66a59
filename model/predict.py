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

from ..manifests.features import FeatureFolder
from .checkpoint import Checkpoint, check_task, load_checkpoint
from .data import (
    MovieData,
    SceneSamples,
    WindowBatch,
    pack_synopses,
    pack_windows,
    read_movie,
    stitch_windows,
)
from .device import autocast
from .losses import teacher_log_distribution
from .mega import MEGA, MegaOutput, SynopsisModel

__all__ = ["Checkpoint", "load_checkpoint", "scene_probabilities", "act_posteriors", "predict_scene", "predict_act",
           "synopsis_guided"]

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
def act_posteriors(model: MEGA, movies: Sequence[MovieData], modalities: Sequence[str], device: torch.device,
                   synopsis_model: SynopsisModel | None = None) -> list[np.ndarray]:
    """Per movie a (5, n_shots) array: for each TP a softmax over the movie's shots (Eq. 7).

    With ``synopsis_guidance`` in the config, a ``synopsis_model`` and a movie that has a
    synopsis, the shot model's O is multiplied by the synopsis guide (:func:`synopsis_guide`)
    and renormalised over the shots: O·P_syn (docs/model.md, choice 13)."""
    model.eval()
    guided = synopsis_model is not None and model.cfg.synopsis_guidance
    if guided:
        synopsis_model.eval()
    result = []
    for movie in movies:  # one movie per pass: its windows are the batch
        batch = pack_windows([movie], modalities, model.cfg.max_len, device)
        with autocast(device):
            out = model(batch.feats, batch.mask, batch.positions, batch.present)
        (logits,) = stitch_windows(out.logits.float(), batch)
        log_post = torch.log_softmax(logits, dim=0)
        if guided and movie.synopsis is not None:
            log_post = torch.log_softmax(log_post + synopsis_guide(model, synopsis_model, movie, batch, out), dim=0)
        result.append(log_post.exp().T.cpu().numpy().astype(np.float64))
    return result


def sync_embeddings(model: MEGA, synopsis_model: SynopsisModel, batch: WindowBatch, present, out: MegaOutput,
                    sents: torch.Tensor, sent_emb: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The shot and sentence embeddings that the synchronisation and Eq. 5 compare
    (``train.sync.space``): the fused u_i and v_j, as the paper, or the content projections of
    what a shot and a sentence show. Shots come stitched per movie; ``sent_emb`` is the synopsis
    model's fused output for ``sents``."""
    if model.cfg.train.sync.space == "content":
        return (stitch_windows(model.content_embeddings(batch.feats, present).float(), batch),
                synopsis_model.content_embeddings(sents))
    return stitch_windows(out.shot_emb.float(), batch), sent_emb


def synopsis_guide(model: MEGA, synopsis_model: SynopsisModel, movie: MovieData, batch: WindowBatch,
                   out: MegaOutput) -> torch.Tensor:
    """log P_syn (n_shots, 5): Eq. 5-6 at inference. The distillation's teacher with the gold
    sentence labels q replaced by what the trained synopsis model predicts, q = softmax over the
    sentences of its TP logits — no label of the movie is read (docs/model.md, choice 13)."""
    sents, mask = pack_synopses([movie], batch.mask.device)
    with autocast(batch.mask.device):
        sent_logits, sent_emb = synopsis_model(sents, mask)
    n = len(movie.synopsis)
    q = torch.softmax(sent_logits[0, :n].float(), dim=0)
    (u,), v = sync_embeddings(model, synopsis_model, batch, batch.present, out, sents, sent_emb)
    kd = model.cfg.train.distill
    return teacher_log_distribution(u, v[0, :n].float(), q, tau=kd.tau, cosine=kd.cosine, teacher_tau=kd.teacher_tau)


def _as_checkpoint(ckpt: Checkpoint | str | os.PathLike, task: str) -> Checkpoint:
    if not isinstance(ckpt, Checkpoint):
        return load_checkpoint(ckpt, task=task)
    check_task(ckpt.task, task, "this")
    return ckpt


def _read(ckpt: Checkpoint, features_dir: str | os.PathLike, synopsis: bool = False) -> MovieData:
    """Read the checkpoint's modalities (and the synopsis) from a feature folder and apply its
    normalisation; a modality the folder lacks is predicted without (missing on every shot,
    docs/model.md)."""
    movie = read_movie(features_dir, ckpt.modalities, synopsis=synopsis, dims=ckpt.model.modality_dims)
    return ckpt.normalizer.apply(movie)


def predict_scene(ckpt: Checkpoint | str | os.PathLike, features_dir: str | os.PathLike) -> np.ndarray:
    """(n_shots,) probability that each shot is the last shot of a scene."""
    ckpt = _as_checkpoint(ckpt, "scene")
    samples = SceneSamples([_read(ckpt, features_dir)], ckpt.modalities, ckpt.cfg.max_len)
    return scene_probabilities(ckpt.model, samples, ckpt.device)


def synopsis_guided(ckpt: Checkpoint, features_dir: str | os.PathLike) -> bool:
    """Whether :func:`predict_act` uses the movie's synopsis: the config asks for guidance and
    the feature folder has a ``synopsis.parquet`` (``extract --synopsis``)."""
    return (ckpt.cfg.synopsis_guidance and ckpt.synopsis_model is not None
            and FeatureFolder(features_dir).synopsis_path.is_file())


def predict_act(ckpt: Checkpoint | str | os.PathLike, features_dir: str | os.PathLike) -> np.ndarray:
    """(5, n_shots) TP posteriors: row n is the distribution of turning point n over shots
    (guided by the movie's synopsis when :func:`synopsis_guided`)."""
    ckpt = _as_checkpoint(ckpt, "act")
    movie = _read(ckpt, features_dir, synopsis=synopsis_guided(ckpt, features_dir))
    (posteriors,) = act_posteriors(ckpt.model, [movie], ckpt.modalities, ckpt.device, ckpt.synopsis_model)
    return posteriors
