"""MESM: Modal-Enhanced Semantic Modeling for video moment retrieval (arXiv 2312.12155), our
implementation, and its training, evaluation and prediction (docs/moments.md).

Read top to bottom as the method:

1. **Inputs.** A video is ``L`` clip vectors (per-second CLIP vectors pooled to the dataset's clip
   length, or a dataset's released clip features), L2-normalised; a query is its word vectors
   (CLIP text tokens) and a sentence vector. Both are projected to ``d`` (two LayerNorm-Dropout-
   Linear layers each); clips get sine positions.
2. **Frame-word enhancement (FW-MESM, paper Sec. "frame-word level").** Cross-attention layers
   in which every clip attends to the query's words give the *enhanced video*: the parts of each
   frame that words can explain are emphasised. The same layers are trained, in the other
   direction, to **reconstruct masked words**: a third of the words (at least one) are replaced by
   a learned mask token, the words attend to the clips of the ground-truth moment, and a
   classifier predicts each masked word's token id (label-smoothed cross-entropy). Only words
   that a ground-truth segment can explain are recoverable, so the layers learn frame-word
   alignment, and the enhanced video keeps what the query talks about.
3. **Segment-sentence enhancement (SS-MESM, paper Sec. "segment-sentence level").** The
   sentences of all queries of the same video (its *context sentences*) form a sequence; the
   query's own sentence is replaced by a learned mask token and reconstructed by layers that
   attend to the other sentences (self-attention) and to the video (cross-attention). The
   reconstructed, L2-normalised vector is prepended to the query's words as one extra token: the
   knowledge the context and the video add to a short query. It is trained with a supervised
   contrastive loss between the mean of the enhanced query tokens and the mean projected clip of
   the query's ground-truth segment: positives are queries of the same video whose segments have
   generalised IoU >= ``iou_gamma``; every other query of the batch is a negative.
4. **Alignment and DETR head.** Cross-attention layers fuse the enhanced video with the enhanced
   query (clips attend to [sentence token, words]); a transformer encoder over the fused clips and
   a global token, and a decoder with ``num_queries`` learned moment queries, give per query a
   foreground/background logit and a normalised (centre, width) span. Training matches predicted
   spans to the ground-truth windows one-to-one (Hungarian; cost ``10·L1 + 1·(−gIoU) + 4·(−p_fg)``)
   and minimises ``10·L1 + 1·(1 − gIoU)`` on matched spans, cross-entropy on every query's label
   (background weighted 0.1), a saliency hinge loss (a clip inside the moment must score
   ``margin`` above one outside), plus ``0.5·L_fw + 0.1·L_ss``. Coefficients are the paper's
   released QVHighlights configuration.
5. **Prediction.** Each moment query gives ``[start, end, p_fg]`` (span times the video's
   duration, clipped); the list is sorted by score (the official submission layout).

What the paper leaves open and how we chose is in docs/moments.md.
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..manifests.atomic import atomic_path, write_json, write_text
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder
from ..manifests.jsonio import parse_json, read_text
from ..manifests.moments import (
    MomentDataset,
    MomentQuery,
    read_moment_dataset,
    read_npz,
    text_feature_path,
    video_feature_path,
)
from ..manifests.provenance import code_version
from .config import packaged_configs
from .device import resolve_device
from .moment_metrics import moment_scores

CHECKPOINT_FORMAT = "mega-pipe-moment-checkpoint/1"


# == configuration ================================================================================
@dataclass(frozen=True)
class MomentConfig:
    hidden: int = 256
    heads: int = 8
    ff: int = 1024
    dropout: float = 0.1
    input_dropout: float = 0.5
    fw_layers: int = 2
    ss_layers: int = 4
    t2v_layers: int = 2
    enc_layers: int = 2
    dec_layers: int = 2
    num_queries: int = 10
    vocab_size: int = 5000        # reconstructed token classes (most frequent training tokens)
    use_fw: bool = True
    use_ss: bool = True
    mask_ratio: float = 1 / 3
    span_coef: float = 10.0
    giou_coef: float = 1.0
    label_coef: float = 4.0
    eos_coef: float = 0.1
    saliency_coef: float = 1.0
    saliency_margin: float = 0.2
    fw_coef: float = 0.5
    ss_coef: float = 0.1
    ss_tau: float = 0.5
    iou_gamma: float = 0.9
    label_smoothing: float = 0.1
    lr: float = 2e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    epochs: int = 200
    batch_videos: int = 12


CONFIGS = {
    # The paper's released QVHighlights settings (hidden 256, 8 heads, 2+2 layers, 10 queries).
    "moment-paper": MomentConfig(),
    # CPU-sized: the same model and losses, narrower and shallower (tests, planted benchmarks).
    "moment-small": MomentConfig(hidden=64, heads=4, ff=128, input_dropout=0.1, fw_layers=1, ss_layers=1,
                                 t2v_layers=1, enc_layers=1, dec_layers=2, vocab_size=200, lr=1e-3,
                                 grad_clip=1.0, epochs=60, batch_videos=8),
}


def moment_config(name_or_path: str | None) -> MomentConfig:
    if name_or_path is None:
        return CONFIGS["moment-paper"]
    if name_or_path in CONFIGS:
        return CONFIGS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        mega = name_or_path in packaged_configs()   # a MEGA config: scene, act, synopsis
        raise MegaPipeError(f"--config {name_or_path!r}: not a packaged moment config "
                            f"({', '.join(CONFIGS)}) nor a JSON file"
                            + (f"; {name_or_path} is a MEGA config of `train --task scene|act|synopsis`"
                               if mega else ""))
    doc = parse_json(read_text(path, "moment config"), str(path))
    if not isinstance(doc, dict):
        raise MegaPipeError(f"--config {path}: must be a JSON object")
    if doc.get("base", "moment-paper") not in CONFIGS:
        raise MegaPipeError(f"--config {path}: base {doc['base']!r} is not one of {', '.join(CONFIGS)}")
    base = CONFIGS[doc.pop("base", "moment-paper")]
    unknown = set(doc) - set(asdict(base))
    if unknown:
        raise MegaPipeError(f"--config {path}: unknown keys {sorted(unknown)}")
    return replace(base, **doc)


# == 1. inputs ====================================================================================
class Proj(nn.Sequential):
    """Two LayerNorm -> Dropout -> Linear layers, ReLU between them."""

    def __init__(self, d_in: int, d: int, dropout: float):
        super().__init__(nn.LayerNorm(d_in), nn.Dropout(dropout), nn.Linear(d_in, d), nn.ReLU(),
                         nn.LayerNorm(d), nn.Dropout(dropout), nn.Linear(d, d))


def sine_positions(n: int, d: int, device) -> torch.Tensor:
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    out = torch.zeros(n, d, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)
    return out


class CrossLayer(nn.Module):
    """``x`` attends to ``ctx`` (cross-attention), then a feed-forward layer; post-norm."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, ctx, ctx_pad, x_pos=None):
        q = x if x_pos is None else x + x_pos
        x = self.n1(x + self.drop(self.attn(q, ctx, ctx, key_padding_mask=ctx_pad, need_weights=False)[0]))
        return self.n2(x + self.drop(self.ff(x)))


class CrossStack(nn.ModuleList):
    def forward(self, x, ctx, ctx_pad, x_pos=None):  # type: ignore[override]
        for layer in self:
            x = layer(x, ctx, ctx_pad, x_pos)
        return x


def _layers(n: int, cfg: MomentConfig) -> CrossStack:
    return CrossStack([CrossLayer(cfg.hidden, cfg.heads, cfg.ff, cfg.dropout) for _ in range(n)])


@dataclass
class Batch:
    """Padded tensors of a batch (``True`` in a ``*_pad`` mask marks padding)."""

    video: torch.Tensor          # (B, L, Dv)
    video_pad: torch.Tensor      # (B, L)
    words: torch.Tensor          # (B, T, Dt)
    words_pad: torch.Tensor      # (B, T)
    word_class: torch.Tensor     # (B, T) reconstruction class, -1: not reconstructable
    sentence: torch.Tensor       # (B, Dt)
    group: torch.Tensor          # (B,) index of the query's video in the batch
    spans: list[torch.Tensor]    # per query (G, 2) normalised (centre, width)
    in_moment: torch.Tensor      # (B, L) clip inside a ground-truth window


# == the model ====================================================================================
class MESM(nn.Module):
    def __init__(self, cfg: MomentConfig, video_dim: int, text_dim: int, n_classes: int):
        super().__init__()
        d = cfg.hidden
        self.cfg = cfg
        self.video_proj = Proj(video_dim, d, cfg.input_dropout)
        self.text_proj = Proj(text_dim, d, cfg.input_dropout)
        # 2. frame-word enhancement and masked word reconstruction (shared layers)
        self.fw = _layers(cfg.fw_layers, cfg)
        self.word_mask = nn.Parameter(torch.zeros(d))
        self.word_classifier = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, n_classes))
        # 3. segment-sentence enhancement
        self.sentence_mask = nn.Parameter(torch.zeros(d))
        self.ss = nn.TransformerDecoder(nn.TransformerDecoderLayer(
            d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True), max(cfg.ss_layers, 1))
        # 4. alignment and the DETR head
        self.t2v = _layers(cfg.t2v_layers, cfg)
        self.global_token = nn.Parameter(torch.randn(d) * 0.02)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(
            d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True), cfg.enc_layers, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(
            d, cfg.heads, cfg.ff, cfg.dropout, batch_first=True), cfg.dec_layers)
        self.moment_queries = nn.Embedding(cfg.num_queries, d)
        # moment anchors: a learned reference (centre, width) per query, refined by the decoder
        centres = (torch.arange(cfg.num_queries, dtype=torch.float32) + 0.5) / cfg.num_queries
        widths = torch.full((cfg.num_queries,), 0.2)
        self.anchors = nn.Parameter(torch.logit(torch.stack([centres, widths], 1)))
        self.anchor_embed = nn.Sequential(nn.Linear(2, d), nn.ReLU(), nn.Linear(d, d))
        self.class_head = nn.Linear(d, 2)                 # 0: foreground, 1: background
        self.span_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 2))
        self.sal_clip, self.sal_global = nn.Linear(d, d), nn.Linear(d, d)

    # -- 3. the context-sentence token ----------------------------------------------------------
    def sentence_token(self, sent: torch.Tensor, group: torch.Tensor, video: torch.Tensor,
                       video_pad: torch.Tensor) -> torch.Tensor:
        """For every query, its own sentence masked among its video's sentences, reconstructed
        from the others and the video: (B, d), L2-normalised."""
        out = torch.empty_like(sent)
        for g in torch.unique(group):
            idx = torch.nonzero(group == g).flatten()
            seq = sent[idx]                                    # (n, d) the video's sentences
            n = len(idx)
            masked = seq.unsqueeze(0).repeat(n, 1, 1)          # row i: sentence i masked
            eye = torch.eye(n, dtype=torch.bool, device=sent.device)
            masked = torch.where(eye[..., None], self.sentence_mask.expand_as(masked), masked)
            v = video[idx[0]].unsqueeze(0).expand(n, -1, -1)
            vp = video_pad[idx[0]].unsqueeze(0).expand(n, -1)
            rec = self.ss(masked, v, memory_key_padding_mask=vp)
            out[idx] = rec[eye]
        return F.normalize(out, dim=-1)

    def forward(self, b: Batch) -> dict:
        cfg = self.cfg
        B, L, _ = b.video.shape
        video = self.video_proj(b.video)
        words = self.text_proj(b.words)
        pos = sine_positions(L, cfg.hidden, video.device).unsqueeze(0)
        # 2. enhanced video: clips attend to words
        enhanced = self.fw(video, words, b.words_pad, pos) if cfg.use_fw else video
        # 3. query tokens: [context-sentence token, words]
        if cfg.use_ss:
            sent = self.text_proj(b.sentence.unsqueeze(1)).squeeze(1)
            token = self.sentence_token(sent, b.group, video, b.video_pad)
            q_tokens = torch.cat([token.unsqueeze(1), words], 1)
            q_pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=words.device), b.words_pad], 1)
        else:
            q_tokens, q_pad = words, b.words_pad
        # 4. alignment, encoder with a global token, decoder with moment queries
        fused = self.t2v(enhanced, q_tokens, q_pad, pos)
        mem_in = torch.cat([self.global_token.expand(B, 1, -1), fused + pos], 1)
        mem_pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=fused.device), b.video_pad], 1)
        memory = self.encoder(mem_in, src_key_padding_mask=mem_pad)
        queries = self.moment_queries.weight + self.anchor_embed(self.anchors.sigmoid())
        hs = self.decoder(queries.expand(B, -1, -1), memory[:, 1:] + pos, memory_key_padding_mask=b.video_pad)
        saliency = (self.sal_clip(memory[:, 1:]) * self.sal_global(memory[:, :1])).sum(-1) / math.sqrt(cfg.hidden)
        out = {"logits": self.class_head(hs), "spans": (self.anchors + self.span_head(hs)).sigmoid(),
               "saliency": saliency,
               "video": video, "q_tokens": q_tokens, "q_pad": q_pad, "pos": pos}
        return out

    # -- 2. masked word reconstruction (training) -----------------------------------------------
    def reconstruct_words(self, b: Batch, video: torch.Tensor, pos: torch.Tensor,
                          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the masked words (B, T, classes), reconstructed from the ground-truth
        clips, and the mask of which positions were masked (and have a class)."""
        words = self.text_proj(b.words)
        valid = (~b.words_pad) & (b.word_class >= 0)
        masked = torch.zeros_like(valid)
        for i in range(len(words)):
            cand = torch.nonzero(valid[i]).flatten()
            if len(cand) == 0:
                continue
            k = max(1, int(len(cand) * self.cfg.mask_ratio))
            masked[i, cand[torch.randperm(len(cand), generator=gen)[:k].to(cand.device)]] = True
        words = torch.where(masked[..., None], self.word_mask.expand_as(words), words)
        rec = self.fw(words, video + pos, ~b.in_moment | b.video_pad)
        return self.word_classifier(rec), masked


# == 4. losses ====================================================================================
def span_to_window(s: torch.Tensor) -> torch.Tensor:
    return torch.stack([s[..., 0] - s[..., 1] / 2, s[..., 0] + s[..., 1] / 2], -1)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised temporal IoU of windows a (N, 2) and b (M, 2): (N, M)."""
    inter = (torch.min(a[:, None, 1], b[None, :, 1]) - torch.max(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    hull = torch.max(a[:, None, 1], b[None, :, 1]) - torch.min(a[:, None, 0], b[None, :, 0])
    iou = inter / union.clamp(min=1e-6)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def hungarian(out: dict, b: Batch, cfg: MomentConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    from scipy.optimize import linear_sum_assignment

    matches = []
    prob = out["logits"].softmax(-1)[..., 0].detach()
    for i, tgt in enumerate(b.spans):
        ps = out["spans"][i].detach()
        cost = (cfg.span_coef * torch.cdist(ps, tgt, p=1)
                - cfg.giou_coef * giou(span_to_window(ps), span_to_window(tgt))
                - cfg.label_coef * prob[i][:, None])
        r, c = linear_sum_assignment(cost.cpu().numpy())
        matches.append((r, c))
    return matches


def moment_loss(model: MESM, out: dict, b: Batch, gen: torch.Generator) -> dict:
    cfg = model.cfg
    B, Q = out["logits"].shape[:2]
    matches = hungarian(out, b, cfg)
    labels = torch.ones(B, Q, dtype=torch.long, device=out["logits"].device)     # background
    span_l1, span_giou, n = 0.0, 0.0, 0
    for i, (r, c) in enumerate(matches):
        r_t, c_t = torch.as_tensor(r), torch.as_tensor(c)
        labels[i, r_t] = 0
        p, t = out["spans"][i, r_t], b.spans[i][c_t]
        span_l1 = span_l1 + F.l1_loss(p, t, reduction="sum")
        span_giou = span_giou + (1 - torch.diag(giou(span_to_window(p), span_to_window(t)))).sum()
        n += len(r)
    weight = torch.tensor([1.0, cfg.eos_coef], device=labels.device)
    losses = {"span": span_l1 / max(n, 1), "giou": span_giou / max(n, 1),
              "label": F.cross_entropy(out["logits"].transpose(1, 2), labels, weight=weight)}
    # saliency: one clip inside vs one outside each query's moment
    sal, inside, pad = out["saliency"], b.in_moment, b.video_pad
    hinge = []
    for i in range(B):
        pos_i = torch.nonzero(inside[i] & ~pad[i]).flatten()
        neg_i = torch.nonzero(~inside[i] & ~pad[i]).flatten()
        if len(pos_i) and len(neg_i):
            p = pos_i[torch.randint(len(pos_i), (1,), generator=gen)]
            q = neg_i[torch.randint(len(neg_i), (1,), generator=gen)]
            hinge.append((cfg.saliency_margin + sal[i, q] - sal[i, p]).clamp(min=0))
    losses["saliency"] = torch.cat(hinge).mean() if hinge else sal.sum() * 0
    total = (cfg.span_coef * losses["span"] + cfg.giou_coef * losses["giou"]
             + cfg.label_coef * losses["label"] + cfg.saliency_coef * losses["saliency"])
    if cfg.use_fw:
        logits, masked = model.reconstruct_words(b, out["video"], out["pos"], gen)
        if masked.any():
            losses["fw"] = F.cross_entropy(logits[masked], b.word_class[masked],
                                           label_smoothing=cfg.label_smoothing)
            total = total + cfg.fw_coef * losses["fw"]
    if cfg.use_ss:
        losses["ss"] = ss_contrastive(out, b, cfg)
        total = total + cfg.ss_coef * losses["ss"]
    losses["total"] = total
    return losses


def ss_contrastive(out: dict, b: Batch, cfg: MomentConfig) -> torch.Tensor:
    """Supervised contrastive loss between each query's enhanced tokens (mean) and the mean
    projected clip of each query's ground-truth segment (windows merged into one span)."""
    inside = b.in_moment.float().unsqueeze(-1)
    seg = (out["video"] * inside).sum(1) / inside.sum(1).clamp(min=1)
    keep = (~out["q_pad"]).float().unsqueeze(-1)
    txt = (out["q_tokens"] * keep).sum(1) / keep.sum(1)
    sim = F.normalize(seg, dim=-1) @ F.normalize(txt, dim=-1).T / cfg.ss_tau      # (B, B)
    merged = torch.stack([torch.stack([span_to_window(s)[:, 0].min(), span_to_window(s)[:, 1].max()])
                          for s in b.spans])
    same_video = b.group[:, None] == b.group[None, :]
    positive = (giou(merged, merged) >= cfg.iou_gamma) & same_video
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -((positive * log_prob).sum(1) / positive.sum(1).clamp(min=1)).mean()


# == data =========================================================================================
@dataclass
class Item:
    query: MomentQuery
    words: np.ndarray       # (T, Dt)
    token_ids: np.ndarray   # (T,) or empty: no reconstruction targets
    sentence: np.ndarray    # (Dt,)


@dataclass
class SplitData:
    items: list[Item]
    videos: dict[str, np.ndarray]       # vid -> (L, Dv)
    clip_len: float

    def by_video(self) -> dict[str, list[Item]]:
        out: dict[str, list[Item]] = {}
        for it in self.items:
            out.setdefault(it.query.vid, []).append(it)
        return out


TextFeatures = Callable[[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)).astype(np.float32)


def pool_seconds(t_start: np.ndarray, t_end: np.ndarray, vectors: np.ndarray, clip_len: float,
                 duration: float) -> np.ndarray:
    """Per-second vectors averaged into clips ``[k·clip_len, (k+1)·clip_len)`` (a sample belongs to
    the clip holding its middle); a clip without a sample takes the nearest earlier clip's."""
    n = max(1, math.ceil(duration / clip_len - 1e-9))
    mids = (t_start + t_end) / 2
    k = np.clip((mids // clip_len).astype(int), 0, n - 1)
    out = np.zeros((n, vectors.shape[1]), np.float32)
    counts = np.bincount(k, minlength=n)
    np.add.at(out, k, vectors)
    for i in range(n):
        if counts[i]:
            out[i] /= counts[i]
        elif i:
            out[i] = out[i - 1]
    return out


def load_split(ds: MomentDataset, split: str, text_features: TextFeatures | None = None) -> SplitData:
    """A split's queries with their text features and their videos' clip features."""
    queries = ds.queries(split)
    videos: dict[str, np.ndarray] = {}
    items = []
    model_id = None
    for q in queries:
        if q.vid not in videos:
            if ds.video_features is not None:
                feats = read_npz(video_feature_path(ds.video_features, q.vid), ("features",))["features"]
            else:
                folder = FeatureFolder(ds.feature_folders / q.vid).require_complete()  # type: ignore[operator]
                if "clip" not in folder.modalities():
                    raise MegaPipeError(f"feature folder {folder.path} has no clip features")
                model_id = folder.samples_meta("clip").get("model_id")
                s = folder.read_samples("clip")
                feats = pool_seconds(s["t_start"], s["t_end"], s["vectors"], ds.clip_len, q.duration)
            if feats.ndim != 2 or len(feats) == 0:
                raise MegaPipeError(f"video {q.vid}: features must be (n_clips, dim), got {feats.shape}")
            videos[q.vid] = _unit(np.asarray(feats, np.float32))
        if ds.text_features is not None:
            z = read_npz(text_feature_path(ds.text_features, q.qid), ("last_hidden_state",))
            words = np.asarray(z["last_hidden_state"], np.float32).reshape(-1, z["last_hidden_state"].shape[-1])
            ids = np.asarray(z.get("token_ids", np.zeros(0)), np.int64)
            sent = np.asarray(z["pooler_output"], np.float32).reshape(-1) if "pooler_output" in z else words.mean(0)
        else:
            if text_features is None:
                raise MegaPipeError("this dataset's text features come from the CLIP text tower; "
                                    "run it through the mega-pipe command line")
            words, ids, sent = text_features(str(model_id), q.query)
        if len(ids) and len(ids) != len(words):
            ids = np.zeros(0, np.int64)
        items.append(Item(q, _unit(words), ids, _unit(sent)))
    return SplitData(items, videos, ds.clip_len)


def build_vocab(data: SplitData, size: int) -> dict[int, int]:
    """The ``size`` most frequent training token ids -> reconstruction class."""
    counts: dict[int, int] = {}
    for it in data.items:
        for t in it.token_ids.tolist():
            counts[t] = counts.get(t, 0) + 1
    top = sorted(counts, key=lambda t: (-counts[t], t))[:size]
    return {t: i for i, t in enumerate(top)}


def make_batch(items: Sequence[Item], data: SplitData, vocab: dict[int, int], device) -> Batch:
    vids = list(dict.fromkeys(it.query.vid for it in items))
    L = max(len(data.videos[it.query.vid]) for it in items)
    T = max(len(it.words) for it in items)
    B = len(items)
    dv = next(iter(data.videos.values())).shape[1]
    dt = items[0].words.shape[1]
    video = np.zeros((B, L, dv), np.float32)
    vpad = np.ones((B, L), bool)
    words = np.zeros((B, T, dt), np.float32)
    wpad = np.ones((B, T), bool)
    wcls = -np.ones((B, T), np.int64)
    inside = np.zeros((B, L), bool)
    spans = []
    for i, it in enumerate(items):
        v = data.videos[it.query.vid]
        video[i, :len(v)], vpad[i, :len(v)] = v, False
        words[i, :len(it.words)], wpad[i, :len(it.words)] = it.words, False
        for j, t in enumerate(it.token_ids.tolist()):
            wcls[i, j] = vocab.get(t, -1)
        dur = it.query.duration
        sp = []
        for s, e in it.query.windows:
            sp.append([(s + e) / 2 / dur, (e - s) / dur])
            k0 = math.floor(s / data.clip_len)
            k1 = math.ceil(e / data.clip_len)
            inside[i, min(k0, len(v) - 1):max(min(k1, len(v)), min(k0, len(v) - 1) + 1)] = True
        spans.append(torch.tensor(sp, dtype=torch.float32, device=device))
    t = lambda a: torch.from_numpy(a).to(device)
    group = torch.tensor([vids.index(it.query.vid) for it in items], device=device)
    return Batch(t(video), t(vpad), t(words), t(wpad), t(wcls),
                 torch.from_numpy(np.stack([it.sentence for it in items])).to(device), group, spans, t(inside))


def video_batches(data: SplitData, batch_videos: int, rng: np.random.Generator | None) -> list[list[Item]]:
    """Batches of whole videos (every query of a video in the same batch: its context sentences)."""
    groups = list(data.by_video().values())
    order = rng.permutation(len(groups)) if rng is not None else np.arange(len(groups))
    return [[it for g in order[i:i + batch_videos] for it in groups[g]] for i in range(0, len(groups), batch_videos)]


# == 5. prediction ================================================================================
@torch.no_grad()
def predict(model: MESM, data: SplitData, vocab: dict[int, int], device, batch_videos: int = 16) -> list[dict]:
    """Official submission lines: ``qid, query, vid, pred_relevant_windows`` sorted by score."""
    model.eval()
    out_lines = []
    for items in video_batches(data, batch_videos, None):
        b = make_batch(items, data, vocab, device)
        out = model(b)
        prob = out["logits"].softmax(-1)[..., 0].cpu().numpy()
        win = span_to_window(out["spans"]).cpu().numpy()
        for i, it in enumerate(items):
            dur = it.query.duration
            rows = [[round(float(np.clip(s * dur, 0, dur)), 4), round(float(np.clip(e * dur, 0, dur)), 4),
                     round(float(p), 6)] for (s, e), p in zip(win[i], prob[i])]
            rows = [r for r in rows if r[1] > r[0]] or [[0.0, dur, 0.0]]
            rows.sort(key=lambda r: -r[2])
            q = it.query
            out_lines.append({"qid": q.qid, "query": q.query, "vid": q.vid, "pred_relevant_windows": rows})
    return out_lines


def ground_truth(data: SplitData) -> list[dict]:
    return [it.query.record() for it in data.items]


# == training =====================================================================================
@dataclass
class MomentTrainOptions:
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    device: str = "auto"
    seed: int = 0
    config: str | None = None
    progress: bool = True
    overrides: dict = field(default_factory=dict)


def _save(path: Path, obj: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _headline(metrics: dict, protocol: str) -> tuple[str, float]:
    """The metric that chooses the epoch, by name, and its value in ``metrics``."""
    if protocol == "qvhighlights":
        return "MR-full-mAP", metrics["brief"]["MR-full-mAP"]
    return "R1@0.7", metrics["R1@0.7"]


def train_moment(manifest: str | Path, out: str | Path, opts: MomentTrainOptions,
                 text_features: TextFeatures | None = None) -> dict:
    """Train MESM on the dataset's train split, choose the epoch on its val split (the
    protocol's headline metric: QVHighlights mAP, Charades R1@0.7), write ``best.pt``,
    ``last.pt``, ``metrics.jsonl`` into ``out``; returns a summary."""
    cfg = moment_config(opts.config)   # the config first: its mistakes before any data is read
    cfg = replace(cfg, **{k: v for k, v in {"epochs": opts.epochs, "batch_videos": opts.batch_size,
                                             "lr": opts.lr, **opts.overrides}.items() if v is not None})
    if cfg.epochs < 1 or cfg.batch_videos < 1 or cfg.lr <= 0:
        raise MegaPipeError("epochs and batch size must be at least 1 and the learning rate positive")
    ds = read_moment_dataset(manifest)
    if "val" not in ds.splits:
        raise MegaPipeError(f"moment dataset {ds.path}: training chooses its epoch on a 'val' split; add one")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(resolve_device(opts.device))
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    train, val = load_split(ds, "train", text_features), load_split(ds, "val", text_features)
    vocab = build_vocab(train, cfg.vocab_size)
    dims = {"video": next(iter(train.videos.values())).shape[1], "text": train.items[0].words.shape[1]}
    model = MESM(cfg, dims["video"], dims["text"], max(len(vocab), 1)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_epoch, best_val, history = -1.0, 0, {}, []
    t0 = time.time()
    bar = tqdm(total=cfg.epochs, desc="train moment", unit="epoch", file=sys.stderr,
               disable=not opts.progress or None)   # None: no bar unless a terminal
    for epoch in range(cfg.epochs):
        model.train()
        sums: dict[str, float] = {}
        batches = video_batches(train, cfg.batch_videos, rng)
        for items in batches:
            b = make_batch(items, train, vocab, device)
            losses = moment_loss(model, model(b), b, gen)
            opt.zero_grad()
            losses["total"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / len(batches)
        metrics = moment_scores(predict(model, val, vocab, device), ground_truth(val), ds.protocol)
        metric, head = _headline(metrics, ds.protocol)
        val_metrics = metrics.get("brief", metrics)
        # epochs count from 1, as the other tasks' (metrics.jsonl, the checkpoint, the summary)
        history.append({"epoch": epoch + 1, "loss": sums, "val": val_metrics})
        state = {"format": CHECKPOINT_FORMAT, "config": asdict(cfg), "dims": dims, "vocab": vocab,
                 "clip_len": ds.clip_len, "protocol": ds.protocol, "model": model.state_dict(),
                 "epoch": epoch + 1, "val": val_metrics, "seed": opts.seed,
                 "code_version": code_version()}
        if head > best:
            best, best_epoch, best_val = head, epoch + 1, val_metrics
            _save(out / "best.pt", state)
        bar.update(1)
        bar.set_postfix(loss=f"{sums.get('total', 0):.3f}", val=f"{head:.1f}")
    bar.close()
    _save(out / "last.pt", state)
    write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    return {"task": "moment", "best_epoch": best_epoch, "select_metric": metric, "best_val": best_val,
            "val_split": "val", "epochs": cfg.epochs, "seconds": round(time.time() - t0, 1), "out": str(out),
            "params": sum(p.numel() for p in model.parameters())}


def is_moment_checkpoint(path: str | Path) -> bool:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MegaPipeError(f"checkpoint {path}: no such file") from None
    except Exception:   # not a torch file we can read (a text file's can be a KeyError): not ours,
        return False    # and checkpoint.read_checkpoint says why in words
    return isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT


def load_moment_model(path: str | Path, device) -> tuple[MESM, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise MegaPipeError(f"{path} is not a moment checkpoint (train --task moment writes them)")
    cfg = MomentConfig(**ck["config"])
    model = MESM(cfg, ck["dims"]["video"], ck["dims"]["text"], max(len(ck["vocab"]), 1))
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), ck


def evaluate_moment(checkpoint: str | Path, manifest: str | Path, split: str, out: str | Path | None,
                    device: str = "auto", text_features: TextFeatures | None = None) -> dict:
    """Predictions (official layout) and the protocol's metrics of ``checkpoint`` on ``split``;
    writes ``predictions_moment_<split>.jsonl`` and ``eval_moment_<split>.json``."""
    ds = read_moment_dataset(manifest)
    dev = torch.device(resolve_device(device))
    model, ck = load_moment_model(checkpoint, dev)
    data = load_split(ds, split, text_features)
    vocab = {int(k): v for k, v in ck["vocab"].items()}
    preds = predict(model, data, vocab, dev)
    metrics = moment_scores(preds, ground_truth(data), ds.protocol)
    folder = Path(out) if out else Path(checkpoint).parent
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / f"predictions_moment_{split}.jsonl", "".join(json.dumps(p) + "\n" for p in preds))
    write_json(folder / f"eval_moment_{split}.json", metrics)
    return {"split": split, "queries": len(preds), "metrics": metrics.get("brief", metrics),
            "predictions": str(folder / f"predictions_moment_{split}.jsonl")}
