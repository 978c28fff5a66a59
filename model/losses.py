"""MEGA training objectives (supplement Sec. 4-5, Eq. 1-8; what the paper leaves open and our
choices: docs/model.md "Losses", docs/training.md).

Scene segmentation trains the centre-shot boundary logits with a class-balanced cross-entropy
(BaSSL's). Act segmentation has labels only on synopsis sentences, so the shot model learns from
them in two steps (supp. Sec. 4 and 5): an EM-style **cross-modal synchronisation** that finds
which shots match which sentences (closed-form E-step, contrastive M-step) and a **distillation**
that turns the sentence-level turning-point (TP) labels into per-TP distributions over shots,
which the shot model's per-TP softmax over shots is trained to match. Every act loss works on ONE
movie, unpadded: the sequences of different movies have nothing to compare with each other.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DISTILLATION_DIRECTIONS = ("teacher_student", "literal")


def balanced_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """2-class CE where positives and negatives each carry half of the batch's weight.

    BaSSL's fine-tuning weighting (``finetune_wrapper.py``; MEGA's balancing is not given): w =
    0.5/#pos for a positive, 0.5/#neg for a negative, loss = Σ w·CE. Boundaries are ~8 % of
    MovieNet shots, so without it the model would learn to say "no boundary". A class absent from
    the batch contributes nothing (its count is clamped to 1 instead of dividing by zero), so a
    batch without positives gives half the mean CE of its negatives, as in BaSSL. logits (N, 2),
    labels (N,) in {0, 1}.
    """
    if logits.dim() != 2 or logits.shape[1] != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, 2) and labels (N,), got {tuple(logits.shape)}, {tuple(labels.shape)}")
    ce = F.cross_entropy(logits, labels.long(), reduction="none")
    positive = labels == 1
    weight = torch.where(
        positive,
        0.5 / positive.sum().clamp(min=1),
        0.5 / (~positive).sum().clamp(min=1),
    )
    return (weight * ce).sum()


def _offset(n_rows: int, n_cols: int, device: torch.device) -> Tensor:
    """|i/L_sh − j/L_syn| for every (shot, sentence), float64 (n_rows, n_cols)."""
    rows = torch.arange(n_rows, device=device, dtype=torch.float64)[:, None] / n_rows
    cols = torch.arange(n_cols, device=device, dtype=torch.float64)[None, :] / n_cols
    return (rows - cols).abs()


def _band(n_rows: int, n_cols: int, xi: float, device: torch.device) -> Tensor:
    """Diagonal band of Eq. 2: |i/L_sh − j/L_syn| < ξ, as a (n_rows, n_cols) bool matrix."""
    return _offset(n_rows, n_cols, device) < xi


@torch.no_grad()
def sync_estep(sim: Tensor, n_shots: int, n_sents: int, xi: float = 0.3, quantile: float = 0.85,
               prior: float = 0.0) -> Tensor:
    """Closed-form E-step (Eq. 4 with the diagonal constraint of Eq. 2): the match matrix W.

    W_ij = 1[m_ij ≥ λ and |i/L_sh − j/L_syn| < ξ]. λ is not given (supp. Sec. 4); an absolute
    threshold on a similarity space that is still being learned would make W empty or full, so λ
    is the ``quantile`` of this movie's in-band similarities (docs/model.md "Losses"): the top (1
    − quantile) of the band are positives. ``sim`` may be padded; only the top-left (n_shots,
    n_sents) block is used and the rest of W is 0. Returns a float {0, 1} matrix shaped like
    ``sim``, no grad.

    ``prior`` (our addition) adds ``prior · (1 − |i/L_sh − j/L_syn| / ξ)`` to m_ij before
    thresholding: the story-order prior of Eq. 2 as a score instead of only a band. At the start
    of training the embeddings are random, so an E-step on m alone picks random pairs and the
    M-step then learns them; the trainer starts with a large prior (W = the band's centre line,
    which is roughly right because synopses follow the story) and anneals it to 0.
    """
    if not (1 <= n_shots <= sim.shape[0] and 1 <= n_sents <= sim.shape[1]):
        raise ValueError(f"sync_estep: {n_shots} shots x {n_sents} sentences do not fit sim {tuple(sim.shape)}")
    block = sim[:n_shots, :n_sents].detach().float()
    band = _band(n_shots, n_sents, xi, sim.device)
    if prior:
        block = block + prior * (1.0 - _offset(n_shots, n_sents, sim.device).float() / xi)
    threshold = torch.quantile(block[band], quantile)
    weights = torch.zeros(sim.shape, dtype=torch.float32, device=sim.device)
    weights[:n_shots, :n_sents] = ((block >= threshold) & band).float()
    return weights


def _multi_positive_nce(scores: Tensor, positives: Tensor) -> Tensor:
    """Mean over rows with ≥ 1 positive of −log(Σ_pos exp(s) / Σ_all exp(s)), a MIL-NCE."""
    has_positive = positives.any(dim=1)
    if not has_positive.any():
        return scores.sum() * 0.0  # keeps the graph: no positives, nothing to learn from
    # Select the rows first: an all −inf row would give NaN gradients even if dropped later.
    scores, positives = scores[has_positive], positives[has_positive]
    positive_scores = scores.masked_fill(~positives, float("-inf"))
    return (torch.logsumexp(scores, dim=1) - torch.logsumexp(positive_scores, dim=1)).mean()


def sync_mstep_loss(shot_emb: Tensor, sent_emb: Tensor, W: Tensor, tau: float = 0.07) -> Tensor:
    """M-step: multi-positive InfoNCE between shots and sentences with W as positives
    (the M-step of supp. Sec. 4, whose loss the paper does not give; docs/model.md "Losses").

    Cosine similarity / τ; symmetric: each shot against all sentences of the movie, and each
    sentence against all shots, averaged. Pulling E-step matches together while pushing the
    rest of the movie apart avoids the collapse that maximising Σ w·m alone would cause. Rows
    without any positive are skipped. shot_emb (L_sh, E), sent_emb (L_syn, E), W (L_sh, L_syn).
    """
    if W.shape != (shot_emb.shape[0], sent_emb.shape[0]):
        raise ValueError(f"W {tuple(W.shape)} does not match {shot_emb.shape[0]} shots x {sent_emb.shape[0]} sentences")
    scores = F.normalize(shot_emb, dim=-1) @ F.normalize(sent_emb, dim=-1).T / tau
    positives = W > 0
    return 0.5 * (_multi_positive_nce(scores, positives) + _multi_positive_nce(scores.T, positives.T))


def distillation_loss(
    shot_logits: Tensor,
    shot_emb: Tensor,
    sent_emb: Tensor,
    q: Tensor,
    tau: float = 1.0,
    direction: str = "teacher_student",
    cosine: bool = False,
    teacher_tau: float = 1.0,
) -> Tensor:
    """Synopsis-to-shot knowledge distillation, Eq. 5-8 (supp. Sec. 5).

    a = softmax over sentences of u_i·v_j / τ (Eq. 5); the teacher P[:, n] = softmax over shots
    of (a @ q)[:, n] (Eq. 6), q = gold one-hot sentence TP labels (docs/training.md); the student
    O[:, n] = softmax over shots of the shot logits (Eq. 7); loss = Σ_n KL (Eq. 8).

    Two knobs the paper leaves open (τ is not given): ``cosine`` computes Eq. 5 on normalised
    embeddings, the space the synchronisation's contrastive loss trains (so τ can be the sync
    temperature); ``teacher_tau`` divides the Eq. 6 scores, which lie in [0, 1] — at 1 a fully
    aligned shot weighs only e ≈ 2.7 times any other, a nearly flat teacher over hundreds of
    shots; 0.1 makes it peak on the aligned shots.

    ``direction="teacher_student"`` (default; docs/model.md "Losses") is KL(P ‖ O) with P
    detached: the usual distillation loss (GraphTP's ``KLDivLoss(log O, P)``), training only the
    shot logits. ``"literal"`` is the paper's KL(O ‖ P) with P attached, so it also moves the
    embeddings (with the fused embeddings, the synopsis transformer and Align.PE). Single movie:
    shot_logits (L_sh, 5), shot_emb (L_sh, E), sent_emb (L_syn, E), q (L_syn, 5).
    """
    if direction not in DISTILLATION_DIRECTIONS:
        raise ValueError(f"distillation direction must be one of {DISTILLATION_DIRECTIONS}, got {direction!r}")
    log_p = teacher_log_distribution(shot_emb, sent_emb, q, tau=tau, cosine=cosine, teacher_tau=teacher_tau)
    log_o = torch.log_softmax(shot_logits, dim=0)
    if direction == "teacher_student":
        log_p = log_p.detach()
        return (log_p.exp() * (log_p - log_o)).sum()
    return (log_o.exp() * (log_o - log_p)).sum()


def teacher_log_distribution(shot_emb: Tensor, sent_emb: Tensor, q: Tensor, *, tau: float = 1.0,
                             cosine: bool = False, teacher_tau: float = 1.0) -> Tensor:
    """log P of Eq. 5-6 (arguments as in :func:`distillation_loss`): (L_sh, 5), each column a log
    softmax over the shots."""
    if cosine:
        shot_emb, sent_emb = F.normalize(shot_emb, dim=-1), F.normalize(sent_emb, dim=-1)
    attention = torch.softmax(shot_emb @ sent_emb.T / tau, dim=1)  # (L_sh, L_syn), Eq. 5
    return torch.log_softmax(attention @ q.to(attention.dtype) / teacher_tau, dim=0)  # Eq. 6


def tp_cross_entropy(logits: Tensor, target_dist: Tensor) -> Tensor:
    """Per-TP cross-entropy between a softmax over units and a target distribution over units.

    For each TP n: −Σ_i target[i, n] · log softmax_i(logits[:, n]), summed over the TPs like
    Eq. 8, so that it equals the teacher-student distillation KL plus the target's entropy
    (same scale when both are used). Used with shot-level TP labels and for the synopsis
    model's sentence labels (docs/training.md, "Act segmentation"). logits (L, 5), target (L, 5)
    with columns summing to 1.
    """
    if logits.shape != target_dist.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target_dist.shape)} differ")
    return -(target_dist * torch.log_softmax(logits, dim=0)).sum()
