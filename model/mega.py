"""MEGA: Multimodal alignmEnt aGgregation and distillAtion (Sadoughi et al., ICCV 2023; its
supplement's Sec. 1 and Tab. 1a; sources and our readings: docs/model.md).

Method. A movie is a sequence of shots, and every shot carries one pre-extracted feature vector
per modality (``shots.parquet``, docs/contract.md). MEGA first encodes each modality on its own:
a linear projection of the features plus two positional signals, the regular positional
encoding of the token index and the **Alignment Positional Encoding** (Align.PE), a learned
embedding of the token's *normalised* position r_i = i / N (N = the true, unpadded length)
quantised into L_n bins. The same Align.PE rows are added to L_n learned **bottleneck tokens**,
so bottleneck token k of every modality stands for the k-th 1/L_n of the input; with
``bottleneck_seed`` "bin_mean" (the named variants; docs/model.md choice 4b) token k also starts from the
mean of the shot tokens of bin k, so it summarises exactly those shots. Each modality
runs N_u post-LN transformer layers over [bottlenecks; shots]. In the **bottleneck fusion**
stage every modality's own N_f layers attend over the bottleneck tokens of *all* modalities
plus its own shots; the bottlenecks are the only channel between modalities, and because they
are tied to the same coarse position they exchange temporally aligned information without
timestamps. The fused shot tokens of all modalities are concatenated along channels into the
shot embedding u_i, and a linear head gives per-shot logits: 2-way boundary logits for scene
segmentation, 5 turning-point logits (softmax over shots per TP, Eq. 7) for act segmentation.
For act segmentation a **synopsis model** with the same unimodal design encodes the
synopsis sentences into v_j of the same width as u_i, which the synchronisation and
distillation losses (``losses.py``) compare with the shots.

The building blocks below follow the data flow (steps 1-8 of docs/model.md "Architecture"):
positional encodings, Align.PE, shot encoder, bottleneck tokens, unimodal transformer,
bottleneck fusion, output head, the MEGA shot model, the synopsis model. Shapes: B batch,
L tokens, C width, M modalities.

This file holds the modules only. Wrong inputs raise ``ValueError``: a user's config is checked
by ``config.py`` and a user's data by ``data.py`` before a module sees them, so these errors
are programming errors. Parameter counts are ``summary.py``.
"""
from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MegaConfig, synopsis_model_config
from .prior import tp_prior_by_index

INIT_STD = 0.02  # BERT initialisation, which the post-LN blocks of Tab. 1a follow


# --- Positional encodings (Tab. 1a row "Pos.Enc. L×C"; docs/model.md choice 2) ----------------


def sinusoidal_table(length: int, width: int) -> Tensor:
    """The fixed Vaswani et al. table: sin on even channels, cos on odd ones, (length, width)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return table


class PositionalEncoding(nn.Module):
    """Regular PE of the token index, learned or sinusoidal (Tab. 1a "Pos.Enc. L×C").

    Whether MEGA's PE is learned is not given (docs/model.md choice 2): a learned L×C table is fine
    for the 17-shot scene window, but for the act model (L = 3000) only a fixed table is
    consistent with the published 6.78M parameters, so the sinusoidal table is a buffer
    (no parameters, not saved in checkpoints because it is recomputed).
    """

    def __init__(self, max_len: int, width: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Parameter(torch.randn(max_len, width) * INIT_STD)
        else:
            self.register_buffer("table", sinusoidal_table(max_len, width), persistent=False)

    def forward(self, index: Tensor) -> Tensor:
        """index (B, L) long -> (B, L, C)."""
        return self.table[index]


# --- Alignment positional encoding (Tab. 1a "Align.PE L_n×C"; docs/model.md choices 3-4) -------


def token_index(mask: Tensor) -> Tensor:
    """Index of every real token among the real tokens of its row, (B, L) long.

    Counting real tokens (instead of using the column number) makes the positions independent
    of where and how much padding there is; padded slots get the index of a real neighbour,
    which is harmless because padded tokens are never attended to.
    """
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def normalised_positions(mask: Tensor) -> Tensor:
    """r_i = i / N with N the TRUE length of each row (docs/model.md choice 3), (B, L) float in [0, 1).

    Normalising by the padded L would squeeze a short movie into the first bins and break the
    shot/sentence/modality alignment that Align.PE exists for. A fully padded row gets r = 0.
    """
    true_length = mask.sum(dim=1, keepdim=True).clamp(min=1)
    return token_index(mask).float() / true_length


def align_bins(positions: Tensor, n_bins: int) -> Tensor:
    """b_i = min(floor(r_i * L_n), L_n - 1): the Align.PE row of each token (docs/model.md choice 3), long."""
    return (positions * n_bins).floor().long().clamp(min=0, max=n_bins - 1)


class AlignPE(nn.Module):
    """The learned L_n×C Align.PE table of one modality (Tab. 1a; docs/model.md choice 3).

    Row b is added to every shot whose normalised position falls in bin b *and* to bottleneck
    token b, which is what ties bottleneck token b to the b-th 1/L_n of the movie in every
    modality (and in the synopsis). Tab. 1a lists the table inside each modality's shot encoder,
    so every modality has its own; the tie between modalities comes from the shared bin index.
    """

    def __init__(self, n_bins: int, width: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(n_bins, width) * INIT_STD)

    def forward(self, bins: Tensor) -> Tensor:
        """bins (B, L) long -> (B, L, C)."""
        return self.table[bins]


# --- Shot encoder (step 1: Tab. 1a rows Linear, Pos.Enc., Align.PE, LayerNorm, Dropout) -------


class ShotEncoder(nn.Module):
    """x = Dropout(LayerNorm(Linear_{D→C}(f) + PE[i] + AlignPE[b_i] [+ Linear_{R→C}(rel_i)])),
    in Tab. 1a's order; the relation term only in the ``scene-relational`` variant
    (``relation_features`` "cut", :func:`cut_relations`).

    A shot whose feature is missing (``present`` False: the movie lacks the modality, or no
    sample overlapped the shot) gets the learned ``missing`` embedding instead of Linear(f), so
    "no value" is never confused with a real feature (docs/model.md, missing modalities).
    The synopsis model uses the same block as its "Sentence Encoder".
    """

    def __init__(self, in_dim: int, cfg: MegaConfig, can_be_missing: bool = True) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, cfg.width)
        self.missing = nn.Parameter(torch.randn(cfg.width) * INIT_STD) if can_be_missing else None
        self.position = PositionalEncoding(cfg.max_len, cfg.width, cfg.positional)
        self.norm = nn.LayerNorm(cfg.width)
        self.dropout = nn.Dropout(cfg.dropout)
        self.max_len = cfg.max_len
        self.relation = (nn.Linear(cfg.max_len - 1 + len(CUT_WIDTHS), cfg.width)
                         if cfg.relation_features == "cut" else None)

    def content(self, feats: Tensor, present: Tensor | None = None) -> Tensor:
        """Linear(f), or the missing embedding where ``present`` (B, L) is False: (B, L, C)."""
        x = self.proj(feats)
        return x if present is None else torch.where(present[..., None], x, self.missing.to(x.dtype))

    def relations(self, feats: Tensor, valid: Tensor) -> Tensor:
        """The relation inputs (:func:`cut_relations`) of the learned projection Linear(f), so
        the model can learn which directions make two shots alike."""
        return cut_relations(self.proj(feats), valid, self.max_len)

    def forward(self, feats: Tensor, index: Tensor, align: Tensor | None,
                present: Tensor | None = None, relations: Tensor | None = None) -> Tensor:
        """feats (B, L, D), index (B, L), align (B, L, C) or None (ablation), present (B, L)
        bool or None (all present), relations (B, L, max_len − 1 + 4) or None -> (B, L, C)."""
        x = self.content(feats, present) + self.position(index)
        if align is not None:
            x = x + align
        if self.relation is not None and relations is not None:
            x = x + self.relation(relations)
        return self.dropout(self.norm(x))


CUT_WIDTHS = (1, 2, 3, 4)   # "cut" relations: best match across the cut after shot i, w = 1..4 each side


def _centred(feats: Tensor, valid: Tensor) -> Tensor:
    """Features centred on the mean of the sequence's valid shots; invalid rows 0."""
    v = valid.to(feats.dtype)[..., None]
    mean = (feats * v).sum(dim=1, keepdim=True) / v.sum(dim=1, keepdim=True).clamp(min=1.0)
    return (feats - mean) * v


def _centred_unit(feats: Tensor, valid: Tensor) -> Tensor:
    """:func:`_centred`, then L2-normalised."""
    return F.normalize(_centred(feats, valid), dim=-1)


def cut_relations(feats: Tensor, valid: Tensor, max_len: int) -> Tensor:
    """The "cut" form of ``relation_features``: feats (B, L, D), valid (B, L) -> (B, L, max_len − 1 + 4).

    Row i holds, in **relative** order, shot i's centred cosine similarity to the shots at
    offsets −h … −1, 1 … max_len − 1 − h (h = (max_len − 1) // 2: −8 … 8 for the 17-shot scene
    window), so the same offset always lands in the same column whatever i's place in the
    window (0 outside the window or for an invalid shot); then, for the cut after shot i and
    w = 1..4, the **best match across that cut**: max_{a ∈ (i−w, i], b ∈ (i, i+w]} sim(a, b)
    (−1 when no valid pair lies inside the window). The last four are the shot-coherence novelty
    of Kender & Yeo (docs/unsupervised.md) seen from inside the window, so the model starts
    from what the parameter-free baseline sees and learns how to weigh and combine it across
    modalities and widths."""
    batch, length, _ = feats.shape
    unit = _centred_unit(feats, valid)
    sim = unit @ unit.transpose(1, 2)                                   # (B, L, L)
    idx = torch.arange(length, device=feats.device)
    half = (max_len - 1) // 2
    offsets = torch.tensor([d for d in range(-half, max_len - half) if d != 0], device=feats.device)
    cols = idx[:, None] + offsets[None, :]                              # (L, max_len − 1)
    inside = (cols >= 0) & (cols < length)
    rel = torch.gather(sim, 2, cols.clamp(0, length - 1)[None].expand(batch, -1, -1)) * inside
    pair_ok = valid[:, :, None] & valid[:, None, :]
    flat = torch.cat([sim.masked_fill(~pair_ok, -1.0).flatten(1), sim.new_full((batch, 1), -1.0)], dim=1)
    pairs = _cut_pairs(length).to(feats.device)                          # (L, 4, w_max²) into flat
    cut = flat[:, pairs.flatten()].view(batch, *pairs.shape).amax(dim=-1)   # (B, L, 4)
    return torch.cat([rel, cut], dim=-1)


@functools.lru_cache(maxsize=8)
def _cut_pairs(length: int) -> Tensor:
    """For shot i and each w of CUT_WIDTHS, the flat indices a·L + b of the pairs a ∈ (i−w, i],
    b ∈ (i, i+w] inside a window of ``length``, padded with L² (the −1 sentinel)."""
    w_max = max(CUT_WIDTHS)
    out = torch.full((length, len(CUT_WIDTHS), w_max * w_max), length * length, dtype=torch.long)
    for i in range(length):
        for k, w in enumerate(CUT_WIDTHS):
            flat = [a * length + b for a in range(max(0, i - w + 1), i + 1) for b in range(i + 1, min(length, i + w + 1))]
            out[i, k, :len(flat)] = torch.tensor(flat, dtype=torch.long)
    return out


# --- Bottleneck tokens (step 2, Tab. 1a "Bottleneck L_n×C") ------------------------------------


def bin_means(shots: Tensor, bins: Tensor, mask: Tensor, n_bins: int) -> Tensor:
    """Mean of the real shot tokens of every Align.PE bin: shots (B, L, C), bins (B, L) long,
    mask (B, L) bool -> (B, L_n, C); a bin without a real shot gives 0."""
    members = F.one_hot(bins, n_bins).to(shots.dtype) * mask[..., None].to(shots.dtype)   # (B, L, L_n)
    counts = members.sum(dim=1).clamp(min=1.0)                                               # (B, L_n)
    return members.transpose(1, 2) @ shots / counts[..., None]


class BottleneckTokens(nn.Module):
    """L_n fusion tokens of one modality (Tab. 1a, step 2): a learned matrix, token k plus Align.PE
    row k, and with ``seed`` "bin_mean" (our reading, docs/model.md) plus a data-dependent seed.

    ``seed`` "none" is the paper-literal form: the tokens are free parameters, and adding
    Align.PE row k to free token k is a reparametrisation (B + A is just another B), so the
    Tab. 2b switch changes nothing the model can compute. With "bin_mean" token k starts from
    the mean of the shot tokens whose Align.PE bin is k, so Align.PE decides *which shots each
    bottleneck token summarises*; without Align.PE in the bottleneck (the Tab. 2b ablation,
    ``align_pe_in_bottleneck`` false) the tokens are not tied to bins and every token starts
    from the mean of all shots.
    """

    def __init__(self, n_tokens: int, width: int, seed: str = "none") -> None:
        super().__init__()
        self.seed = seed
        self.tokens = nn.Parameter(torch.randn(n_tokens, width) * INIT_STD)

    def forward(self, batch_size: int, align_table: Tensor | None, shots: Tensor | None = None,
                bins: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """-> (B, L_n, C); ``align_table`` is the (L_n, C) Align.PE table or None (not tied to
        bins); ``shots`` (B, L, C), ``bins`` (B, L), ``mask`` (B, L) are needed for "bin_mean"."""
        tokens = self.tokens if align_table is None else self.tokens + align_table
        tokens = tokens.unsqueeze(0).expand(batch_size, -1, -1)
        if self.seed == "none":
            return tokens
        if align_table is not None:   # token k summarises the shots of Align.PE bin k
            return tokens + bin_means(shots, bins, mask, self.tokens.shape[0])
        weights = mask[..., None].to(shots.dtype)
        return tokens + ((shots * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0))[:, None]


# --- Transformer encoder layer (step 4: post-LN BERT block, Tab. 1a "Trans.Enc.") -------------


class EncoderLayer(nn.Module):
    """Post-LN BERT block: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(W2 GELU(W1 x))).

    Parameters: 3 C×C attention projections (+ output projection), two LayerNorms and the C→C_k→C
    FFN: 7,087,872 for C = 768, C_k = 3072, the unit of the parameter-count check of docs/model.md
    ("Parameter counts"). Attention runs through ``scaled_dot_product_attention`` with a
    key-padding mask; attention dropout uses the same p as BERT does.

    ``memory`` are extra tokens that are attended to (keys/values) but not updated. The fusion
    layer uses it for the other modalities' bottleneck tokens: attention is invariant to the
    order of its keys, so updating [B_m; x_m] against keys [B_others; B_m; x_m] gives exactly
    the outputs of a full layer over the (M·L_n + L) concatenation [B_1..B_M; x_m] of Tab. 1a
    for the tokens that are kept, without computing the ones that would be thrown away.
    """

    def __init__(self, width: int, ffn_width: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_dropout = dropout
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.attn_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_width), nn.GELU(), nn.Linear(ffn_width, width))
        self.ffn_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor, memory: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        """x (B, T, C) tokens to update; key_mask (B, T) True = real; memory (B, S, C) or None;
        memory_mask (B, S) or None (every memory token attended to).

        Every caller puts the stream's own bottleneck tokens (never masked) among the keys of
        ``x``, so no query row ever has all its keys masked and no NaN can appear, even for a
        fully padded sequence.
        """
        batch, n_query, width = x.shape
        context, context_mask = x, key_mask
        if memory is not None:
            context = torch.cat([memory, x], dim=1)
            if memory_mask is None:
                memory_mask = key_mask.new_ones(batch, memory.shape[1])
            context_mask = torch.cat([memory_mask, key_mask], dim=1)
        head_dim = width // self.n_heads
        q = self.query(x).view(batch, n_query, self.n_heads, head_dim).transpose(1, 2)
        k, v = self.key_value(context).view(batch, -1, 2, self.n_heads, head_dim).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=context_mask[:, None, None, :],
            dropout_p=self.attn_dropout if self.training else 0.0,
        )
        attn = attn.transpose(1, 2).reshape(batch, n_query, width)
        x = self.attn_norm(x + self.dropout(self.out(attn)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


# --- Unimodal transformer (steps 1-4 for one modality) -----------------------------------------


class UnimodalStream(nn.Module):
    """One modality: shot encoder, bottleneck tokens, concat [B_m; x_m], N_u encoder layers."""

    def __init__(self, in_dim: int, cfg: MegaConfig, can_be_missing: bool = True) -> None:
        super().__init__()
        self.align_pe = AlignPE(cfg.n_bottleneck, cfg.width) if cfg.align_pe else None
        self.align_pe_in_bottleneck = cfg.align_pe and cfg.align_pe_in_bottleneck
        self.shot_encoder = ShotEncoder(in_dim, cfg, can_be_missing)
        self.bottleneck = BottleneckTokens(cfg.n_bottleneck, cfg.width, cfg.bottleneck_seed)
        self.unimodal = nn.ModuleList(
            EncoderLayer(cfg.width, cfg.ffn_width, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_unimodal)
        )

    def forward(self, feats: Tensor, index: Tensor, bins: Tensor, key_mask: Tensor,
                present: Tensor | None = None) -> Tensor:
        """feats (B, L, D) -> tokens (B, L_n + L, C); key_mask (B, L_n + L) covers both parts;
        present (B, L) bool or None: where the modality has a value (``ShotEncoder``)."""
        align = self.align_pe(bins) if self.align_pe is not None else None
        relations = None
        if self.shot_encoder.relation is not None:
            valid = key_mask[:, -feats.shape[1]:] & (present if present is not None else True)
            relations = self.shot_encoder.relations(feats, valid)
        shots = self.shot_encoder(feats, index, align, present, relations)
        table = self.align_pe.table if self.align_pe_in_bottleneck else None
        n_b = key_mask.shape[1] - shots.shape[1]
        bottleneck = self.bottleneck(feats.shape[0], table, shots, bins, key_mask[:, n_b:])
        tokens = torch.cat([bottleneck, shots], dim=1)
        for layer in self.unimodal:
            tokens = layer(tokens, key_mask)
        return tokens


# --- Bottleneck fusion (steps 5-6; docs/model.md choice 5) -------------------------------------


class BottleneckFusion(nn.Module):
    """N_f fusion layers per modality (separate weights) over [B_1 .. B_M; x_m].

    Before every fusion layer the current bottleneck tokens of all modalities are gathered
    (docs/model.md choice 5; identical to "once at fusion start" for N_f = 1, the value used by
    both tasks); each modality's layer then updates its own bottleneck tokens and shots from its
    own fused sequence, so each modality keeps its own copy of the bottlenecks. The bottlenecks
    are the only path between modalities (concatenated, not averaged as in MBT: supp. Sec. 1). A
    modality missing on every shot of a sequence (``available`` False for that row) has nothing to
    share: its bottlenecks are masked out of the other modalities' fusion for that row.
    """

    def __init__(self, cfg: MegaConfig, n_modalities: int) -> None:
        super().__init__()
        self.n_bottleneck = cfg.n_bottleneck
        self.layers = nn.ModuleList(
            nn.ModuleList(
                EncoderLayer(cfg.width, cfg.ffn_width, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_fusion)
            )
            for _ in range(n_modalities)
        )

    def forward(self, streams: list[Tensor], key_mask: Tensor, available: list[Tensor] | None = None) -> list[Tensor]:
        """streams: per modality (B, L_n + L, C) -> per modality fused shot tokens (B, L, C);
        available: per modality (B,) bool (the modality has a value on some shot) or None."""
        n_b = self.n_bottleneck
        if available is None:
            available = [key_mask.new_ones(key_mask.shape[0]) for _ in streams]
        shares = [a[:, None].expand(-1, n_b) for a in available]   # (B, L_n) per modality
        for depth in range(len(self.layers[0])):
            bottlenecks = [tokens[:, :n_b] for tokens in streams]
            fused = []
            for m, (tokens, layers) in enumerate(zip(streams, self.layers)):
                others = [k for k in range(len(streams)) if k != m]
                memory = torch.cat([bottlenecks[k] for k in others], dim=1) if others else None
                memory_mask = torch.cat([shares[k] for k in others], dim=1) if others else None
                fused.append(layers[depth](tokens, key_mask, memory=memory, memory_mask=memory_mask))
            streams = fused
        return [tokens[:, n_b:] for tokens in streams]


# --- Output head (steps 7-8) --------------------------------------------------------------------


class OutputHead(nn.Module):
    """Concatenate the modalities' shot tokens along channels (C·M) and map them to N_c logits."""

    def __init__(self, fused_width: int, n_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(fused_width, n_classes)

    def forward(self, shot_tokens: list[Tensor]) -> tuple[Tensor, Tensor]:
        """-> (logits (B, L, N_c), shot embeddings u (B, L, C·M))."""
        shot_emb = torch.cat(shot_tokens, dim=-1)
        return self.proj(shot_emb), shot_emb


# --- The shot model ---------------------------------------------------------------------------


def tripod_log_prior(n_bins: int) -> Tensor:
    """(n_bins, 5): log of the mass of TRIPOD's TP position Gaussians over each of ``n_bins``
    equal bins of the relative position (``prior.tp_prior``), floored at 1e-6."""
    return torch.log(torch.as_tensor(tp_prior_by_index(n_bins).T,
                                     dtype=torch.float32).clamp(min=1e-6))


@dataclass
class MegaOutput:
    """What the shot model returns."""

    logits: Tensor  # (B, L, n_classes)
    shot_emb: Tensor  # (B, L, width * M): fused per-modality shot tokens, concatenated (u_i of Eq. 5)
    head_logits: Tensor | None = None  # act with a position head: the MEGA head's logits alone (distillation)


def _init_linear(module: nn.Module) -> None:
    """BERT initialisation for linear layers (normal, std 0.02, zero bias)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=INIT_STD)
        nn.init.zeros_(module.bias)


class MEGA(nn.Module):
    """The multimodal MEGA shot model (supp. Sec. 1, Tab. 1a): any number of modalities, any input dims.

    Sequences longer than ``cfg.max_len`` are rejected: the trainer splits long movies into chunks
    (docs/training.md, "Movies longer than max_len"), because silently truncating would drop the
    end of a movie.
    """

    def __init__(self, cfg: MegaConfig, modality_dims: Mapping[str, int]) -> None:
        super().__init__()
        if not modality_dims:
            raise ValueError("MEGA needs at least one modality")
        for name, dim in modality_dims.items():
            if not name or "." in name or not isinstance(dim, numbers.Integral) or dim < 1:
                raise ValueError(f"bad modality {name!r}: dim {dim!r} (names without '.', dims >= 1)")
        self.cfg = cfg
        self.modalities: list[str] = list(modality_dims)
        self.modality_dims = {m: int(d) for m, d in modality_dims.items()}
        self.streams = nn.ModuleDict({m: UnimodalStream(d, cfg) for m, d in self.modality_dims.items()})
        self.fusion = BottleneckFusion(cfg, len(self.modalities))
        self.head = OutputHead(cfg.width * len(self.modalities), cfg.n_classes)
        # The act-sync variant only: the TP position head (docs/model.md choice 11), a per-TP
        # logit bias for each of ``position_bins`` bins of the movie-global position, started at
        # the log of TRIPOD's published position prior, so the model starts as the prior. It is
        # added to the prediction; the distillation trains the MEGA head alone
        # (``MegaOutput.head_logits``), so only shot-level gold moves it — without shot gold
        # it stays that published prior, fixed, never random weights.
        bins = cfg.position_bins if cfg.task == "act" else 0
        self.position_bias = nn.Parameter(tripod_log_prior(bins)) if bins else None
        self.apply(_init_linear)

    def forward(
        self,
        feats: Mapping[str, Tensor],
        mask: Tensor,
        positions: Tensor | None = None,
        present: Mapping[str, Tensor] | None = None,
    ) -> MegaOutput:
        """feats: per modality (B, L, D_m); mask (B, L) bool, True = real shot; positions (B, L)
        normalised positions r_i in [0, 1) for Align.PE, or None for i / true length (docs/model.md choice 3);
        present: per modality (B, L) bool, False where the modality has no value (a modality
        left out counts as present everywhere; docs/model.md, missing modalities).
        """
        present = dict(present or {})
        self._check_inputs(feats, mask, positions, present)
        if positions is None:
            positions = normalised_positions(mask)
        index = token_index(mask)
        bins = align_bins(positions, self.cfg.n_bottleneck)
        key_mask = torch.cat([mask.new_ones(mask.shape[0], self.cfg.n_bottleneck), mask], dim=1)
        streams = [self.streams[m](feats[m], index, bins, key_mask, present.get(m)) for m in self.modalities]
        available = [(present[m] & mask).any(dim=1) if m in present else mask.new_ones(mask.shape[0])
                     for m in self.modalities]
        head_logits, shot_emb = self.head(self.fusion(streams, key_mask, available))
        logits = head_logits
        if self.position_bias is not None:
            logits = logits + self.position_bias[align_bins(positions, len(self.position_bias))].to(logits.dtype)
        return MegaOutput(logits=logits, shot_emb=shot_emb, head_logits=None if logits is head_logits else head_logits)

    def content_embeddings(self, feats: Mapping[str, Tensor], present: Mapping[str, Tensor] | None = None) -> Tensor:
        """Per shot, the shot encoders' linear projections (the missing embedding where a
        modality is missing) concatenated over the modalities: (B, L, width · M), what a shot
        shows with no position in it (used for synchronisation when ``train.sync.space`` is
        "content"; docs/training.md)."""
        present = present or {}
        return torch.cat([self.streams[m].shot_encoder.content(feats[m], present.get(m))
                          for m in self.modalities], dim=-1)

    def _check_inputs(self, feats: Mapping[str, Tensor], mask: Tensor, positions: Tensor | None,
                      present: Mapping[str, Tensor]) -> None:
        """Turn wrong inputs into one readable line instead of a shape error deep inside."""
        if set(feats) != set(self.modalities):
            raise ValueError(
                f"MEGA was built for modalities {self.modalities}, got features for {sorted(feats)}"
            )
        if mask.dtype != torch.bool or mask.dim() != 2:
            raise ValueError(f"mask must be a (B, L) bool tensor, got {tuple(mask.shape)} {mask.dtype}")
        if mask.shape[1] > self.cfg.max_len:
            raise ValueError(
                f"sequence of {mask.shape[1]} tokens exceeds the model's max_len {self.cfg.max_len}; "
                "split it into chunks of at most max_len shots (the trainer does this)"
            )
        for m in self.modalities:
            expected = (*mask.shape, self.modality_dims[m])
            if tuple(feats[m].shape) != expected:
                raise ValueError(f"features of {m!r} have shape {tuple(feats[m].shape)}, expected {expected}")
        for m, p in present.items():
            if m not in self.modality_dims or p.dtype != torch.bool or p.shape != mask.shape:
                raise ValueError(f"present[{m!r}] must be a {tuple(mask.shape)} bool tensor for one of "
                                    f"{self.modalities}, got {tuple(p.shape)} {p.dtype}")
        if positions is not None:
            if positions.shape != mask.shape:
                raise ValueError(f"positions have shape {tuple(positions.shape)}, expected {tuple(mask.shape)}")
            real = positions[mask]
            if real.numel() and (real.min() < 0 or real.max() > 1):
                raise ValueError("positions must be normalised to [0, 1)")


# --- The synopsis model (Tab. 1b "Syn. Model"; the teacher of supp. Sec. 5) --------------------


class SynopsisModel(nn.Module):
    """Sentence encoder + N transformer layers over synopsis sentences, 5 TP logits per sentence.

    The same unimodal stream as one modality of the shot model (sentence encoder with PE and
    Align.PE, L_n = 20 bottleneck tokens, post-LN layers), at width C·M and FFN C_k·M so that
    v_j lives in the space of the shot embeddings u_i (Tab. 1b synopsis column). One modality
    means no fusion. Align.PE bins use r_j = j / (number of sentences), so sentence j shares its
    coarse position with shot i whenever j/L_syn ≈ i/L_sh (docs/model.md choice 3).
    """

    def __init__(self, cfg: MegaConfig, sentence_dim: int, n_modalities: int = 1) -> None:
        super().__init__()
        if cfg.task != "synopsis" and cfg.synopsis is None:
            raise ValueError(f"the {cfg.task!r} config has no synopsis section")
        if n_modalities < 1 or sentence_dim < 1:
            raise ValueError("synopsis model needs n_modalities >= 1 and sentence_dim >= 1")
        # An act config's synopsis section at width C·M, or a task-"synopsis" config as is
        # (then it is the whole model: ``train --task synopsis``, the act model's teacher).
        self.cfg = synopsis_model_config(cfg, n_modalities)
        self.sentence_dim = sentence_dim
        self.stream = UnimodalStream(sentence_dim, self.cfg, can_be_missing=False)   # sentences always exist
        self.head = nn.Linear(self.cfg.width, cfg.n_classes)
        # Optional position head: a learned per-TP logit bias for each of ``position_bins``
        # relative-position bins, added to the content logits (docs/training.md, "Synopsis
        # task"): the TP-position prior as its own parameters, next to what the sentences say.
        # Sentence j of N reads the bin of its centre (j + ½) / N, the position at which the
        # priors it starts from (``baselines``) place a sentence.
        bins = self.cfg.position_bins
        self.position_bias = nn.Parameter(torch.zeros(bins, cfg.n_classes)) if bins else None
        self.apply(_init_linear)

    def forward(self, sents: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """sents (B, S, D), mask (B, S) bool -> (logits (B, S, 5), embeddings v (B, S, C·M))."""
        if mask.dtype != torch.bool or tuple(sents.shape) != (*mask.shape, self.sentence_dim):
            raise ValueError(
                f"synopsis input {tuple(sents.shape)} with mask {tuple(mask.shape)} {mask.dtype}; "
                f"expected (B, S, {self.sentence_dim}) and a (B, S) bool mask"
            )
        if mask.shape[1] > self.cfg.max_len:
            raise ValueError(
                f"synopsis of {mask.shape[1]} sentences exceeds max_len {self.cfg.max_len}"
            )
        n_b = self.cfg.n_bottleneck
        bins = align_bins(normalised_positions(mask), n_b)
        key_mask = torch.cat([mask.new_ones(mask.shape[0], n_b), mask], dim=1)
        sent_emb = self.stream(sents, token_index(mask), bins, key_mask)[:, n_b:]
        logits = self.head(sent_emb)
        if self.position_bias is not None:
            centres = (token_index(mask).float() + 0.5) / mask.sum(dim=1, keepdim=True).clamp(min=1)
            logits = logits + self.position_bias[align_bins(centres, len(self.position_bias))]
        return logits, sent_emb

    def content_embeddings(self, sents: Tensor) -> Tensor:
        """The sentence encoder's linear projection (B, S, C·M): a sentence without its position."""
        return self.stream.shot_encoder.proj(sents)
