"""Long-range multimodal pretraining of MEGA's per-modality encoders on unlabelled movies
(Argaw, Lee, Woodson, Kweon, Caba Heilbron, "Long-range Multimodal Pretraining for Movie
Understanding", ICCV 2023, arXiv 2308.09775; cited below as "LRMP"; docs/pretraining.md).

Method (LRMP's model and objectives as the summary of the paper we had describes them —
not its method section, so no section numbers are cited; docs/pretraining.md). A movie is a sequence of shots, each
carrying one frozen base-encoder feature per modality (``shots.parquet``, docs/contract.md): the
paper's frozen base encoders are our extractors, whose outputs ``extract`` already writes.

1. **Samples are long shot sequences** in the movie's own order (LRMP's long-range sequences, and its
   ablation that longer spans transfer better): ``seq_len`` consecutive shots (default 256; hundreds of
   shots, a whole planted movie), never shuffled.
2. **Per-modality contextual transformers** (LRMP's "contextual transformers", one per
   modality, intra-modal long-range reasoning). Ours is exactly MEGA's unimodal stream
   (``mega.UnimodalStream``: shot encoder with PE and Align.PE, bottleneck tokens, N_u post-LN
   layers) built from a MEGA config, so its weights have the names and shapes of the MEGA
   model's ``streams.<m>`` for that config and transfer into it (:func:`transfer_encoders`).
3. **Masked-shot modelling** (LRMP's intra-modal masked objective). A random
   ``mask_ratio`` of the shots of every modality is hidden: the shot encoder sees the learned
   "missing" embedding there (the token MEGA already uses for a value it does not have,
   docs/model.md), and the contextual output at a hidden shot must pick the hidden feature out of
   the features of all shots of the same sample (InfoNCE, :func:`masked_nce`), so only the
   temporal context can tell it which shot it was.
4. **Inter-modal alignment** (LRMP's inter-modal alignment, contrastive). For every
   pair of modalities the contextual embeddings of the *same shot* are positives and the other
   shots of the same sample — its temporal neighbours, the hard negatives of a long sequence —
   are negatives (symmetric InfoNCE, :func:`alignment_nce`); ``neighbour_window`` > 0 keeps
   only negatives within that many shots.
5. **Cross-modal transformer** (LRMP's joint model): the contextual tokens of all modalities, each
   with a learned modality-type embedding, are concatenated along the sequence (M·L tokens) and
   run through ``cross_layers`` post-LN layers; the fused shot embedding is the mean of a shot's
   cross-modal tokens over the modalities it has (:meth:`PretrainModel.fused`).
6. **Cross-modal masked modelling** (LRMP's masked modelling, across modalities): the cross-modal output at a hidden shot of
   modality m must pick out the hidden feature too — now it may read the other modalities of the
   same shot as well as the context.

The loss is the weighted sum of 3, 4 and 6 (weights ``intra``, ``inter``, ``cross``: 1 each, as
LRMP sums its objectives). Choices the paper leaves open (targets, temperature, mask ratio,
negatives, the pooling of the fused embedding) are ours, listed once in docs/pretraining.md.

This file holds the model, the losses and the transfer into MEGA; the loop is
``pretrain_train.py``. Wrong inputs from a user are :class:`MegaPipeError` lines.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..manifests.errors import MegaPipeError
from .checkpoint import check_task, read_checkpoint, stored_config
from .config import MegaConfig
from .data import Normalizer
from .mega import (
    MEGA,
    EncoderLayer,
    UnimodalStream,
    _init_linear,
    align_bins,
    normalised_positions,
    token_index,
)

TASK = "pretrain"   # the checkpoint's ``task``
FUSED = "fused"     # the name of the fused embedding (embeddings.parquet column; no modality may use it)


# --- Settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainSettings:
    """What pretraining adds to the MEGA config whose encoders it trains (docs/pretraining.md)."""

    seq_len: int = 256            # shots per sample (LRMP: long range)
    mask_ratio: float = 0.15      # shots hidden per modality (BERT's rate; LRMP gives none we could read)
    tau: float = 0.07             # InfoNCE temperature (CLIP/MoCo's; ours)
    cross_layers: int = 1         # cross-modal transformer depth
    neighbour_window: int = 0     # inter-modal negatives within this many shots (0: the whole sample)
    intra: float = 1.0            # loss weights (LRMP sums its objectives)
    inter: float = 1.0
    cross: float = 1.0

    def check(self) -> None:
        """One line for the first value out of range."""
        if self.seq_len < 2:
            raise MegaPipeError(f"--seq-len must be at least 2 shots, got {self.seq_len}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise MegaPipeError(f"--mask-ratio must be in (0, 1), got {self.mask_ratio}")
        if self.tau <= 0:
            raise MegaPipeError(f"--tau must be > 0, got {self.tau}")
        if self.cross_layers < 1 or self.neighbour_window < 0:
            raise MegaPipeError("--cross-layers must be >= 1 and --neighbour-window >= 0")
        if min(self.intra, self.inter, self.cross) < 0 or self.intra + self.inter + self.cross <= 0:
            raise MegaPipeError("loss weights must be >= 0 and not all 0")


def encoder_config(cfg: MegaConfig, settings: PretrainSettings) -> MegaConfig:
    """The MEGA config the contextual transformers are built from: ``cfg``'s widths, heads,
    layers, Align.PE bins and dropout, with ``max_len`` long enough for a pretraining sample.
    Only the regular PE table depends on ``max_len`` (when it is learned); it is the one tensor
    that is not transferred when the lengths differ (:func:`transfer_encoders`)."""
    if cfg.task not in ("scene", "act"):
        raise MegaPipeError(f"pretraining builds the per-modality encoders of a scene or act config, "
                            f"not of task {cfg.task!r}")
    if cfg.relation_features != "none":
        raise MegaPipeError("pretraining supports relation_features \"none\" only (the scene-relational "
                            "variant's relation inputs are window similarities, not per-shot features)")
    return dataclasses.replace(cfg, max_len=max(cfg.max_len, settings.seq_len))


# --- Losses (LRMP's objectives) -------------------------------------------------------------------


def masked_nce(pred: Tensor, target: Tensor, query: Tensor, keys: Tensor, tau: float) -> Tensor | None:
    """Masked-shot InfoNCE: pred (B, L, P) at the hidden shots (``query`` (B, L) bool) must pick
    out their own target (B, L, P) among the targets of the shots ``keys`` (B, L) of the same
    sample. Cosine similarities / ``tau``; mean over the queries; None without a query."""
    if not bool(query.any()):
        return None
    logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).transpose(1, 2) / tau   # (B, L, L)
    logits = logits.masked_fill(~keys[:, None, :], float("-inf"))
    b, i = query.nonzero(as_tuple=True)
    return F.cross_entropy(logits[b, i], i)


def alignment_nce(a: Tensor, b: Tensor, valid: Tensor, tau: float, window: int = 0) -> Tensor | None:
    """Inter-modal alignment: shot i of modality a against shot i of modality b (positive) and the
    other valid shots of the same sample (negatives; within ``window`` shots when > 0), both
    directions. a, b (B, L, P); valid (B, L) bool: both modalities have the shot."""
    if int(valid.sum()) < 2:
        return None
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(1, 2) / tau   # (B, L, L)
    keys = valid[:, None, :] & valid[:, :, None]
    if window > 0:
        idx = torch.arange(a.shape[1], device=a.device)
        keys = keys & ((idx[:, None] - idx[None, :]).abs() <= window)[None]
    rows, i = valid.nonzero(as_tuple=True)
    ab = sim.masked_fill(~keys, float("-inf"))[rows, i]
    ba = sim.transpose(1, 2).masked_fill(~keys, float("-inf"))[rows, i]
    return 0.5 * (F.cross_entropy(ab, i) + F.cross_entropy(ba, i))


# --- The model (LRMP's encoders) -------------------------------------------------------------------


@dataclass
class PretrainOutput:
    """Per modality: contextual tokens y_m (B, L, C) and cross-modal tokens z_m (B, L, C)."""

    contextual: dict[str, Tensor]
    cross: dict[str, Tensor]


class PretrainModel(nn.Module):
    """Per-modality contextual transformers (MEGA's unimodal streams), a cross-modal transformer,
    and the small heads of the pretraining objectives (targets and predictors)."""

    def __init__(self, cfg: MegaConfig, modality_dims: Mapping[str, int], settings: PretrainSettings) -> None:
        super().__init__()
        if not modality_dims:
            raise MegaPipeError("pretraining needs at least one modality")
        if FUSED in modality_dims:
            raise MegaPipeError(f"a modality may not be called {FUSED!r} (the fused embedding's name)")
        self.cfg = encoder_config(cfg, settings)
        self.settings = settings
        self.modalities = list(modality_dims)
        self.modality_dims = {m: int(d) for m, d in modality_dims.items()}
        width = self.cfg.width
        try:
            self.streams = nn.ModuleDict({m: UnimodalStream(d, self.cfg) for m, d in self.modality_dims.items()})
        except ValueError as exc:
            raise MegaPipeError(f"cannot build the pretraining encoders: {exc}") from None
        self.modality_type = nn.Parameter(torch.randn(len(self.modalities), width) * 0.02)
        self.cross_layers = nn.ModuleList(
            EncoderLayer(width, self.cfg.ffn_width, self.cfg.n_heads, self.cfg.dropout)
            for _ in range(settings.cross_layers))
        # Objective heads: a learned projection of each modality's input feature as the masked
        # targets, predictors for the intra- and cross-modal masked objectives, and a projection
        # into the shared alignment space (ours: linear heads, docs/pretraining.md).
        self.target = nn.ModuleDict({m: nn.Linear(d, width) for m, d in self.modality_dims.items()})
        self.predict_intra = nn.ModuleDict({m: nn.Linear(width, width) for m in self.modalities})
        self.predict_cross = nn.ModuleDict({m: nn.Linear(width, width) for m in self.modalities})
        self.align = nn.ModuleDict({m: nn.Linear(width, width) for m in self.modalities})
        self.apply(_init_linear)

    def forward(self, feats: Mapping[str, Tensor], mask: Tensor, present: Mapping[str, Tensor],
                hidden: Mapping[str, Tensor] | None = None) -> PretrainOutput:
        """feats per modality (B, L, D_m), mask (B, L) real shots, present per modality (B, L),
        hidden per modality (B, L): shots whose feature the encoders must not see."""
        hidden = hidden or {}
        n_b = self.cfg.n_bottleneck
        index = token_index(mask)
        bins = align_bins(normalised_positions(mask), n_b)
        key_mask = torch.cat([mask.new_ones(mask.shape[0], n_b), mask], dim=1)
        contextual = {}
        for m in self.modalities:
            visible = present[m] & ~hidden[m] if m in hidden else present[m]
            contextual[m] = self.streams[m](feats[m], index, bins, key_mask, visible)[:, n_b:]
        tokens = torch.cat([contextual[m] + self.modality_type[k] for k, m in enumerate(self.modalities)], dim=1)
        keys = mask.repeat(1, len(self.modalities))
        for layer in self.cross_layers:
            tokens = layer(tokens, keys)
        length = mask.shape[1]
        cross = {m: tokens[:, k * length:(k + 1) * length] for k, m in enumerate(self.modalities)}
        return PretrainOutput(contextual, cross)

    def losses(self, feats: Mapping[str, Tensor], mask: Tensor, present: Mapping[str, Tensor],
               hidden: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The objectives of one batch (module docstring, steps 3, 4 and 6) and their weighted sum."""
        out = self(feats, mask, present, hidden)
        s = self.settings
        parts: dict[str, list[Tensor]] = {"intra": [], "inter": [], "cross": []}
        for m in self.modalities:
            have = present[m] & mask
            query = hidden[m] & have
            target = self.target[m](feats[m])
            for name, head, tokens in (("intra", self.predict_intra, out.contextual),
                                       ("cross", self.predict_cross, out.cross)):
                loss = masked_nce(head[m](tokens[m]), target, query, have, s.tau)
                if loss is not None:
                    parts[name].append(loss)
        for a_i, a in enumerate(self.modalities):
            for b in self.modalities[a_i + 1:]:
                loss = alignment_nce(self.align[a](out.contextual[a]), self.align[b](out.contextual[b]),
                                     present[a] & present[b] & mask, s.tau, s.neighbour_window)
                if loss is not None:
                    parts["inter"].append(loss)
        losses = {k: torch.stack(v).mean() for k, v in parts.items() if v}
        weights = {"intra": s.intra, "inter": s.inter, "cross": s.cross}
        total = sum(weights[k] * v for k, v in losses.items())
        losses["loss"] = total if isinstance(total, Tensor) else mask.new_zeros((), dtype=torch.float32)
        return losses

    @staticmethod
    def fused(out: PretrainOutput, present: Mapping[str, Tensor]) -> Tensor:
        """The fused shot embedding (B, L, C): the mean of a shot's cross-modal tokens over the
        modalities it has (over all of them where it has none)."""
        names = list(out.cross)
        stack = torch.stack([out.cross[m] for m in names], dim=0)                  # (M, B, L, C)
        have = torch.stack([present[m] for m in names], dim=0).to(stack.dtype)     # (M, B, L)
        none = have.sum(dim=0, keepdim=True) == 0
        have = torch.where(none, torch.ones_like(have), have)
        return (stack * have[..., None]).sum(dim=0) / have.sum(dim=0)[..., None]


def hide_shots(mask: Tensor, present: Mapping[str, Tensor], ratio: float,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Per modality, hide each real shot that has a value with probability ``ratio``
    (independently per modality), at least one per sample and modality where possible."""
    hidden = {}
    for m, have in present.items():
        have = have & mask
        draw = torch.rand(have.shape, generator=generator, device="cpu").to(have.device) < ratio
        pick = draw & have
        # a sample with shots but nothing drawn hides its first shot that has a value
        empty = ~pick.any(dim=1) & have.any(dim=1)
        first = torch.zeros_like(pick)
        first[torch.arange(have.shape[0], device=have.device), have.float().argmax(dim=1)] = True
        hidden[m] = pick | (first & empty[:, None])
    return hidden


# --- Checkpoints and the transfer into MEGA -------------------------------------------------------


def settings_from_state(state: dict) -> PretrainSettings:
    return PretrainSettings(**state["pretrain"])


def build_from_state(state: dict, path: str | os.PathLike) -> PretrainModel:
    """The pretraining model of a checkpoint's state, weights loaded, in eval mode."""
    cfg = stored_config(state, path)
    model = PretrainModel(cfg, state["modality_dims"], settings_from_state(state))
    model.load_state_dict(state["model"])
    return model.eval()


def read_pretrain_checkpoint(path: str | os.PathLike, what: str) -> dict:
    """A ``mega-pipe pretrain`` checkpoint's state; one line if ``path`` is another kind."""
    state = read_checkpoint(path)
    check_task(state["task"], TASK, what)
    return state


# The regular PE table depends on the sequence length when it is learned (the scene window's 17
# shots vs a pretraining sample's hundreds): it is left at its fresh initialisation when the
# lengths differ, and said so. Every other tensor must match.
LENGTH_DEPENDENT = ("shot_encoder.position.table",)


def transfer_encoders(model: MEGA, state: dict, what: str, freeze: bool = False) -> dict:
    """Load the pretrained per-modality encoders of ``state`` (a pretrain checkpoint) into
    ``model.streams`` (MEGA's unimodal encoders, steps 1-4 of docs/model.md); with ``freeze``
    they are not trained further. Returns what was loaded and what was left as initialised.
    A modality the checkpoint lacks, another input dimension, or a tensor of another shape is
    one MegaPipeError line naming the config to pretrain with."""
    dims = state["modality_dims"]
    pre = state["model"]
    loaded, kept = 0, []
    for m in model.modalities:
        if m not in dims:
            raise MegaPipeError(f"{what}: pretrained on modalities {', '.join(dims)}; this run uses {m!r}")
        if dims[m] != model.modality_dims[m]:
            raise MegaPipeError(f"{what}: modality {m} was pretrained on {dims[m]}-d features, this run's "
                                f"are {model.modality_dims[m]}-d")
        stream = model.streams[m]
        own = stream.state_dict()
        new = {}
        for name, tensor in own.items():
            source = pre.get(f"streams.{m}.{name}")
            if source is None:
                raise MegaPipeError(f"{what}: has no streams.{m}.{name} (pretrained with another config "
                                    f"form; pretrain with this run's --config)")
            if tuple(source.shape) != tuple(tensor.shape):
                if name in LENGTH_DEPENDENT:
                    kept.append(f"streams.{m}.{name}")
                    new[name] = tensor
                    continue
                raise MegaPipeError(
                    f"{what}: streams.{m}.{name} is {tuple(source.shape)} in the checkpoint but "
                    f"{tuple(tensor.shape)} in this {model.cfg.task} model (pretrained with widths "
                    f"C={state['config']['width']}, C_k={state['config']['ffn_width']}, "
                    f"L_n={state['config']['n_bottleneck']}, N_u={state['config']['n_unimodal']}; "
                    f"this run has C={model.cfg.width}, C_k={model.cfg.ffn_width}, "
                    f"L_n={model.cfg.n_bottleneck}, N_u={model.cfg.n_unimodal}): pretrain with this "
                    f"run's --config")
            new[name] = source.to(tensor.dtype)
            loaded += 1
        stream.load_state_dict(new)
        if freeze:
            freeze_stream(stream, kept, m)
    return {"checkpoint": what, "tensors_loaded": loaded, "left_initialised": kept, "frozen": bool(freeze)}


def freeze_stream(stream: nn.Module, kept: list[str], modality: str) -> None:
    """Stop training the transferred tensors of one stream (a tensor left initialised, e.g. a
    length-dependent PE table, keeps training)."""
    for name, param in stream.named_parameters():
        if f"streams.{modality}.{name}" not in kept:
            param.requires_grad_(False)


def freeze_transferred(model: MEGA, kept: list[str]) -> None:
    """``--freeze-init`` on a resumed run: freeze the same tensors again (weights come from last.pt)."""
    for m in model.modalities:
        freeze_stream(model.streams[m], kept, m)


def pretrained_normalizer(fitted: Normalizer, state: dict, modalities: list[str]) -> Normalizer:
    """The run's normaliser with the pretrained encoders' input transform for the shot
    modalities (they were trained on features standardised with the pretraining movies'
    statistics); anything else (the synopsis vectors) keeps the run's own statistics."""
    pre = Normalizer.from_state(state["normalization"])
    mean, std = dict(fitted.mean), dict(fitted.std)
    for m in modalities:
        mean[m], std[m] = pre.mean[m], pre.std[m]
    return Normalizer(mean, std)
