"""MEGA losses: balanced CE, synchronisation E/M-steps, distillation, per-TP cross-entropy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mega_pipe.model.losses import (
    balanced_cross_entropy,
    distillation_loss,
    sync_estep,
    sync_mstep_loss,
    teacher_log_distribution,
    tp_cross_entropy,
)

# --- balanced cross-entropy (BaSSL's weighting) -------------------------------------------------


def test_balanced_cross_entropy_weights_classes_equally():
    torch.manual_seed(0)
    logits = torch.randn(10, 2, requires_grad=True)
    labels = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    ce = F.cross_entropy(logits, labels, reduction="none")
    expected = 0.5 * ce[labels == 1].mean() + 0.5 * ce[labels == 0].mean()
    loss = balanced_cross_entropy(logits, labels)
    torch.testing.assert_close(loss, expected)
    # the class sizes do not matter: repeating every negative 3 times leaves the loss unchanged
    negatives = labels == 0
    more_logits = torch.cat([logits, logits[negatives], logits[negatives]])
    more_labels = torch.cat([labels, labels[negatives], labels[negatives]])
    torch.testing.assert_close(balanced_cross_entropy(more_logits, more_labels), loss)


def test_balanced_cross_entropy_without_positives():
    logits = torch.randn(6, 2, requires_grad=True)
    labels = torch.zeros(6, dtype=torch.long)
    loss = balanced_cross_entropy(logits, labels)
    torch.testing.assert_close(loss, 0.5 * F.cross_entropy(logits, labels))
    loss.backward()
    assert torch.isfinite(logits.grad).all()


# --- synchronisation E-step (Eq. 2, Eq. 4) -------------------------------------------------------


def test_estep_keeps_top_quantile_inside_the_band():
    n_shots, n_sents, xi, quantile = 20, 8, 0.3, 0.8
    gen = torch.Generator().manual_seed(0)
    sim = torch.rand(n_shots, n_sents, generator=gen, requires_grad=True)
    with torch.no_grad():
        sim[19, 0] = 5.0  # the most similar pair of all, but far off the diagonal
    W = sync_estep(sim, n_shots, n_sents, xi=xi, quantile=quantile)
    assert not W.requires_grad and W.dtype == torch.float32

    values = sim.detach().numpy()
    i, j = np.meshgrid(np.arange(n_shots), np.arange(n_sents), indexing="ij")
    band = np.abs(i / n_shots - j / n_sents) < xi
    threshold = np.quantile(values[band], quantile)
    expected = (values >= threshold) & band
    assert np.array_equal(W.numpy().astype(bool), expected)
    assert W[19, 0] == 0 and W[~torch.from_numpy(band)].sum() == 0
    assert 0.15 < W.sum() / band.sum() < 0.25  # the top 20 % of the band


def test_estep_ignores_padding():
    gen = torch.Generator().manual_seed(1)
    sim = torch.rand(12, 6, generator=gen)
    padded = torch.full((16, 9), 100.0)
    padded[:12, :6] = sim
    W = sync_estep(padded, 12, 6)
    assert W.shape == (16, 9) and W[12:].sum() == 0 and W[:, 6:].sum() == 0
    assert torch.equal(W[:12, :6], sync_estep(sim, 12, 6))
    with pytest.raises(ValueError):
        sync_estep(sim, 13, 6)


# --- synchronisation M-step (docs/model.md "Losses") ---------------------------------------------


def _diagonal_matches(n_shots: int, n_sents: int) -> torch.Tensor:
    W = torch.zeros(n_shots, n_sents)
    W[torch.arange(n_shots), torch.arange(n_shots) * n_sents // n_shots] = 1.0
    return W


def test_mstep_loss_is_low_for_aligned_embeddings_and_trains_towards_them():
    torch.manual_seed(0)
    W = _diagonal_matches(24, 6)
    sentences = F.normalize(torch.randn(6, 32), dim=-1)
    aligned_shots = W @ sentences + 0.01 * torch.randn(24, 32)
    random_shots = torch.randn(24, 32)
    aligned, unaligned = sync_mstep_loss(aligned_shots, sentences, W), sync_mstep_loss(random_shots, sentences, W)
    assert aligned < 0.5 * unaligned

    shots = random_shots.clone().requires_grad_(True)
    optimiser = torch.optim.SGD([shots], lr=0.5)
    first = sync_mstep_loss(shots, sentences, W).item()
    for _ in range(50):
        optimiser.zero_grad()
        loss = sync_mstep_loss(shots, sentences, W)
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.5 * first


def test_mstep_skips_rows_without_positives():
    torch.manual_seed(0)
    shots = torch.randn(10, 8, requires_grad=True)
    sentences = torch.randn(4, 8, requires_grad=True)
    W = torch.zeros(10, 4)
    W[2, 1] = 1.0  # one match: only shot 2 and sentence 1 have positives
    loss = sync_mstep_loss(shots, sentences, W)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(shots.grad).all() and torch.isfinite(sentences.grad).all()
    assert loss > 0 and shots.grad[2].abs().sum() > 0
    empty = sync_mstep_loss(shots, sentences, torch.zeros(10, 4))
    assert empty.item() == 0.0 and empty.requires_grad


# --- distillation (Eq. 5-8) ----------------------------------------------------------------------


def _toy_movie(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shot_emb = torch.randn(15, 8, generator=gen, requires_grad=True)
    sent_emb = torch.randn(5, 8, generator=gen, requires_grad=True)
    q = torch.eye(5)[torch.tensor([0, 1, 2, 3, 4])]  # one gold TP per sentence
    return shot_emb, sent_emb, q


def test_distillation_is_zero_when_student_equals_teacher():
    shot_emb, sent_emb, q = _toy_movie()
    with torch.no_grad():
        teacher_scores = torch.softmax(shot_emb @ sent_emb.T, dim=1) @ q  # (a @ q), Eq. 6 logits
    for direction in ("teacher_student", "literal"):
        loss = distillation_loss(teacher_scores + 3.0, shot_emb, sent_emb, q, direction=direction)
        assert abs(loss.item()) < 1e-5  # a shift per TP does not change a softmax over shots
    other = distillation_loss(torch.randn(15, 5), shot_emb, sent_emb, q)
    assert other > 1e-3


def test_distillation_gradient_reaches_only_the_student_by_default():
    shot_emb, sent_emb, q = _toy_movie(1)
    logits = torch.randn(15, 5, requires_grad=True)
    distillation_loss(logits, shot_emb, sent_emb, q).backward()
    assert logits.grad.abs().sum() > 0
    assert shot_emb.grad is None and sent_emb.grad is None

    logits.grad = None
    literal = distillation_loss(logits, shot_emb, sent_emb, q, direction="literal")
    literal.backward()
    assert shot_emb.grad.abs().sum() > 0 and sent_emb.grad.abs().sum() > 0
    log_o = torch.log_softmax(logits, dim=0)
    log_p = torch.log_softmax(torch.softmax(shot_emb @ sent_emb.T, dim=1) @ q, dim=0)
    torch.testing.assert_close(literal, (log_o.exp() * (log_o - log_p)).sum())
    with pytest.raises(ValueError):
        distillation_loss(logits, shot_emb, sent_emb, q, direction="reverse")


# --- per-TP cross-entropy -------------------------------------------------------------------------


def test_tp_cross_entropy_is_distillation_kl_plus_entropy():
    shot_emb, sent_emb, q = _toy_movie(2)
    logits = torch.randn(15, 5, requires_grad=True)
    with torch.no_grad():
        target = torch.softmax(torch.softmax(shot_emb @ sent_emb.T, dim=1) @ q, dim=0)
    entropy = -(target * target.log()).sum()
    torch.testing.assert_close(
        tp_cross_entropy(logits, target), distillation_loss(logits, shot_emb, sent_emb, q) + entropy
    )
    # minimised (zero gradient) when the per-TP softmax over units equals the target
    at_target = target.log().clone().requires_grad_(True)
    tp_cross_entropy(at_target, target).backward()
    assert at_target.grad.abs().max() < 1e-6
    hard = torch.zeros(15, 5)
    hard[[3, 7, 8, 11, 14], torch.arange(5)] = 1.0
    expected = -sum(torch.log_softmax(logits[:, n], dim=0)[i] for n, i in enumerate([3, 7, 8, 11, 14]))
    torch.testing.assert_close(tp_cross_entropy(logits, hard), expected)


# --- story-order prior, teacher sharpness (our choices, docs/training.md) -------------------------


def test_estep_prior_turns_the_band_into_its_centre_line():
    """With a dominant prior the E-step ignores the similarities and keeps the pairs closest to
    the diagonal; with a small one the similarities still decide."""
    n_shots, n_sents = 40, 10
    sim = torch.rand(n_shots, n_sents, generator=torch.Generator().manual_seed(2))
    i, j = np.meshgrid(np.arange(n_shots), np.arange(n_sents), indexing="ij")
    offset = np.abs(i / n_shots - j / n_sents)
    W = sync_estep(sim, n_shots, n_sents, xi=0.3, quantile=0.8, prior=1000.0).numpy().astype(bool)
    band = offset < 0.3
    assert not (W & ~band).any() and 0.15 < W.sum() / band.sum() < 0.25
    # every kept pair is at least as close to the diagonal as every dropped in-band pair
    assert offset[W].max() <= offset[band & ~W].min() + 1e-3
    weak = sync_estep(sim, n_shots, n_sents, xi=0.3, quantile=0.8, prior=1e-6)
    assert torch.equal(weak, sync_estep(sim, n_shots, n_sents, xi=0.3, quantile=0.8))


def test_teacher_temperature():
    torch.manual_seed(3)
    n_shots, n_sents = 30, 6
    shot_emb, sent_emb = torch.randn(n_shots, 8), torch.randn(n_sents, 8)
    q = torch.zeros(n_sents, 5)
    q[torch.arange(5), torch.arange(5)] = 1.0
    # Each column is a distribution over shots; a lower teacher temperature sharpens it.
    def entropy(log_p):
        return -(log_p.exp() * log_p).sum(dim=0)
    flat = teacher_log_distribution(shot_emb, sent_emb, q, cosine=True, tau=0.07)
    sharp = teacher_log_distribution(shot_emb, sent_emb, q, cosine=True, tau=0.07, teacher_tau=0.1)
    torch.testing.assert_close(sharp.exp().sum(dim=0), torch.ones(5))
    assert (entropy(sharp) < entropy(flat)).all()
    # cosine: the length of the embeddings does not matter; with dot products it does
    torch.testing.assert_close(teacher_log_distribution(3 * shot_emb, sent_emb, q, cosine=True, tau=0.07), flat)
    assert not torch.allclose(teacher_log_distribution(3 * shot_emb, sent_emb, q),
                              teacher_log_distribution(shot_emb, sent_emb, q))
    # distillation_loss uses exactly this teacher
    logits = torch.randn(n_shots, 5)
    expected = (sharp.exp() * (sharp - torch.log_softmax(logits, dim=0))).sum()
    torch.testing.assert_close(
        distillation_loss(logits, shot_emb, sent_emb, q, cosine=True, tau=0.07, teacher_tau=0.1), expected)


# --- distillation with position (docs/training.md "Distillation with position") ---------------------


def _look_alike_movie():
    """40 shots, 8 sentences; TP 0 on sentence 1 (early). Shot 35 (late) is an exact copy of the
    TP sentence, shot 5 (in its band) a noisy one: unmasked, the teacher prefers the far copy."""
    torch.manual_seed(4)
    sent_emb = torch.randn(8, 16)
    shot_emb = torch.randn(40, 16)
    shot_emb[35] = sent_emb[1]
    shot_emb[5] = sent_emb[1] + 0.5 * torch.randn(16)
    q = torch.zeros(8, 5)
    q[[1, 3, 4, 6, 7], torch.arange(5)] = 1.0
    return shot_emb, sent_emb, q
