"""``mega-pipe embed``: contextual per-shot embeddings of a pretrained model, written beside
``shots.parquet`` as ``embeddings.parquet`` (docs/contract.md, docs/pretraining.md).

For each feature folder: the checkpoint's modalities are read (a modality the movie lacks is
missing on every shot), normalised with the checkpoint's statistics and run through the
pretrained model (``model/pretrain.py``) in ``seq_len``-shot windows with 50 % overlap (the
windows of act training, ``data.act_windows``; overlapping outputs averaged), so every shot gets
its context whatever the movie's length. Per shot the file holds each modality's contextual
embedding (the per-modality transformer's output; null where the shot has no value of that
modality) and the fused one (the cross-modal transformer's tokens averaged over the modalities
the shot has).

Reruns: the file carries a cache key of the checkpoint's content, ``shots.parquet``'s content
and the windowing; a folder whose file has the key the run would compute is skipped. Writes are
atomic under a per-folder lock; the temporary file a killed run left is removed by the next run.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..manifests.atomic import exclusive_lock
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder, embeddings_table, vectors_of
from ..manifests.provenance import code_version
from ..manifests.schema import read_manifest
from ..model.data import act_windows, pack_windows, read_movie, stitch_windows
from ..model.device import autocast
from ..model.metrics import scene_metrics
from ..model.pretrain import PretrainModel
from ..model.pretrain_train import load_pretrain
from .cache import file_fingerprint, stage_key

log = logging.getLogger(__name__)

EMBED_VERSION = 1   # bump when the computation changes (invalidates every cached file)


def embed_key(checkpoint_fp: str, shots_fp: str, seq_len: int) -> str:
    """The cache key of one folder's embeddings.parquet."""
    return stage_key(stage="embed", version=EMBED_VERSION, checkpoint=checkpoint_fp, shots=shots_fp,
                     seq_len=seq_len)


def check_models(folder: FeatureFolder, models: dict) -> list[str]:
    """The folder's features must have the dimensions the checkpoint was pretrained on (else one
    error line). Features of another model than the checkpoint's with the same dimensions are
    accepted, as ``segment`` accepts them (a checkpoint pretrained on synthetic features embeds a
    ``--models tiny`` folder); returned as notes ("clip: clip-tiny, not synthetic") for a warning:
    the embeddings are only meaningful for features like those the encoders learnt from."""
    meta = folder.modality_meta()
    notes = []
    for m, want in models.items():
        have = meta.get(m)
        if have is None or have.get("absent"):
            continue   # missing on every shot: null column
        if have.get("dim") != want["dim"]:
            raise MegaPipeError(f"{folder}: modality {m} comes from model {have.get('model_id')} "
                                f"({have.get('dim')}-d), the checkpoint was pretrained on "
                                f"{want['model_id']} ({want['dim']}-d)")
        if (have.get("model_id"), have.get("weights_sha256")) != (want["model_id"], want["weights_sha256"]):
            notes.append(f"{m}: {have.get('model_id')}, not {want['model_id']}")
    return notes


@torch.no_grad()
def movie_embeddings(model: PretrainModel, movie, device: torch.device) -> tuple[dict, np.ndarray]:
    """Per modality (n_shots, C) contextual embeddings and the (n_shots, C) fused ones."""
    seq_len = model.settings.seq_len
    batch = pack_windows([movie], model.modalities, seq_len, device)
    with autocast(device):
        out = model(batch.feats, batch.mask, batch.present)
        fused = model.fused(out, batch.present)
    per = {m: stitch_windows(out.contextual[m].float(), batch)[0].cpu().numpy() for m in model.modalities}
    return per, stitch_windows(fused.float(), batch)[0].cpu().numpy()


def embed_folders(checkpoint: str | os.PathLike, folders: Sequence[str | os.PathLike], *, device: str = "cpu",
                  progress: bool = True) -> list[dict]:
    """Write ``embeddings.parquet`` in every folder (skipping those already up to date); one
    record per folder: ``{"folder", "status": "written" | "cached", "shots"}``."""
    model, normalizer, state = load_pretrain(checkpoint, device)
    dev = next(model.parameters()).device
    ckpt_fp = file_fingerprint(checkpoint)
    meta = {"checkpoint": str(checkpoint), "checkpoint_sha256": ckpt_fp, "width": model.cfg.width,
            "modalities": list(model.modalities), "seq_len": model.settings.seq_len,
            "config": state["settings"].get("config"), "code_version": code_version()}
    checked = [FeatureFolder(f).require_complete() for f in folders]   # all inputs before any work
    other = sorted({n for f in checked for n in check_models(f, state["models"])})
    if other:
        log.warning("the features come from other models than the checkpoint was pretrained on "
                    "(%s); the dimensions match, so they are embedded, but the embeddings mean "
                    "something only for features like those the encoders learnt from",
                    "; ".join(other))
    records = []
    for folder in tqdm(checked, desc="embed", unit="movie", file=sys.stderr,
                       disable=(not progress) or None):
        records.append(_embed_one(folder, model, normalizer, state, meta, ckpt_fp, dev))
    return records


def _embed_one(folder: FeatureFolder, model: PretrainModel, normalizer, state: dict, meta: dict,
               ckpt_fp: str, device: torch.device) -> dict:
    key = embed_key(ckpt_fp, file_fingerprint(folder.shots_path), model.settings.seq_len)
    with exclusive_lock(folder.path / ".embed.lock", f"{folder.embeddings_path}"):
        for stale in folder.stale_embedding_temps():   # left by a killed run
            stale.unlink(missing_ok=True)
        n_shots = folder.n_shots()
        if folder.cached_key(FeatureFolder.EMBEDDINGS) == key:
            return {"folder": str(folder), "status": "cached", "shots": n_shots}
        movie = read_movie(folder, model.modalities, dims=model.modality_dims)
        normalizer.apply(movie)
        per, fused = movie_embeddings(model, movie, device)
        have = {m: movie.presence(m) for m in model.modalities}
        table = embeddings_table(folder.movie_id, folder.read_shot_times(), per, have, fused, meta, key)
        folder.write_embeddings(table)
    return {"folder": str(folder), "status": "written", "shots": n_shots,
            "windows": len(act_windows(n_shots, model.settings.seq_len))}


def folders_of(manifest: str | os.PathLike | None, folders: Sequence[str | os.PathLike]) -> list[Path]:
    """The folders to embed: those of ``manifest`` (every split) plus those given."""
    out = [Path(f) for f in folders]
    if manifest is not None:
        out = [e.features for e in read_manifest(manifest)] + out
    if not out:
        raise MegaPipeError("embed: give feature folders or --manifest")
    return out


# --- Linear probes (is the embedding useful?) ---------------------------------------------------


def _pair_inputs(x: np.ndarray) -> np.ndarray:
    """The input of the boundary after shot i: [x_i, x_{i+1}, |x_i − x_{i+1}|, x_i ⊙ x_{i+1}]
    (the usual pair features of sentence-pair probes; a linear function of [x_i, x_{i+1}] alone
    cannot express a distance). The last shot pairs with itself."""
    nxt = np.concatenate([x[1:], x[-1:]], axis=0)
    return np.concatenate([x, nxt, np.abs(x - nxt), x * nxt], axis=1)


def _probe_inputs(folder: FeatureFolder, source: str) -> np.ndarray:
    """Per shot, the probe's input from ``source``: ``"raw"`` (shots.parquet's modalities,
    concatenated, a missing value 0) or a column of embeddings.parquet (null as 0)."""
    if source == "raw":
        movie = read_movie(folder, folder.modalities())
        parts = [np.where(movie.presence(m)[:, None], movie.features[m], 0.0) for m in movie.features]
    else:
        table = folder.read_embeddings([source])
        parts = [np.nan_to_num(vectors_of(table[source]))]
    return _pair_inputs(np.concatenate(parts, axis=1).astype(np.float32))


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Class-balanced L2-regularised logistic regression, full-batch L-BFGS; (w, b)."""
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    pos = max(float(yt.mean()), 1e-6)
    weight = torch.where(yt > 0, 0.5 / pos, 0.5 / max(1 - pos, 1e-6))
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt, weight=weight)
                + l2 * (w * w).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def _frames(folder: os.PathLike) -> list[list[int]]:
    times = FeatureFolder(folder).read_shot_times()
    return np.stack([times["start_frame"], times["end_frame"]], axis=1).tolist()


PROBE_L2 = (1e-4, 1e-2, 1.0)   # chosen on the 'val' movies (train when there are none)


def _probe_records(data: list, mu: np.ndarray, sd: np.ndarray, w: np.ndarray, b: float) -> list[dict]:
    """Scene records (``metrics.scene_metrics``) of the probe ``w, b`` on (inputs, entry) pairs."""
    return [{"movie_id": e.movie_id, "prob": (1 / (1 + np.exp(-(((v - mu) / sd) @ w + b)))).tolist(),
             "label": e.scene_labels, "shot_frames": _frames(e.features)} for v, e in data]


def boundary_probe(source: str, by_split: dict) -> dict:
    """One scene-boundary probe on ``source`` (:func:`_probe_inputs`) for manifest entries by
    split (``{"train": [...], "val": [...], "test": [...]}``): fit on train (each L2 of
    PROBE_L2), choose on val (train without val), score on test (AP, F1)."""
    data = {s: [(_probe_inputs(FeatureFolder(e.features), source), e) for e in es] for s, es in by_split.items()}
    x = np.concatenate([v for v, _ in data["train"]])
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    y = np.concatenate([[0 if v is None else abs(v) for v in e.scene_labels] for _, e in data["train"]])
    keep = np.concatenate([[v is not None for v in e.scene_labels] for _, e in data["train"]])
    fits = {l2: _fit_logistic(((x - mu) / sd)[keep], y[keep].astype(np.float64), l2) for l2 in PROBE_L2}
    pick = data["val"] or data["train"]
    l2 = max(PROBE_L2, key=lambda c: scene_metrics(_probe_records(pick, mu, sd, *fits[c]))["ap"])
    metrics = scene_metrics(_probe_records(data["test"], mu, sd, *fits[l2]))
    return {"ap": metrics["ap"], "f1": metrics["f1"], "l2": l2, "input_dim": int(x.shape[1])}


def probe_report(manifest: str | os.PathLike) -> dict:
    """Scene-boundary linear probes: a logistic regression on the pair features of shots i, i+1
    (:func:`_pair_inputs`) fitted on the
    manifest's 'train' movies, its L2 weight chosen on 'val' by AP, scored on 'test' (AP, the
    paper's scene metrics) for each embedding column and for the raw features."""
    entries = [e for e in read_manifest(manifest) if e.scene_labels is not None]
    by_split = {s: [e for e in entries if e.split == s] for s in ("train", "val", "test")}
    if not by_split["train"] or not by_split["test"]:
        raise MegaPipeError(f"--probe {manifest}: needs movies with scene_labels in splits 'train' and 'test'")
    first = FeatureFolder(by_split["train"][0].features)
    sources = ["raw", *first.embeddings_meta()["modalities"], "fused"]
    report = {source: boundary_probe(source, by_split) for source in sources}
    return {"task": "scene boundary", "probe": "logistic regression on [x_i, x_(i+1), |x_i - x_(i+1)|, x_i * x_(i+1)]",
            "train_movies": len(by_split["train"]), "test_movies": len(by_split["test"]), "results": report}
