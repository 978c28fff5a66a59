"""MEGA model: fidelity to the paper's size, shapes, masking, Align.PE and trainability."""
from __future__ import annotations

import json

import pytest
import torch
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.model.config import (
    MegaConfig,
    config_from_dict,
    config_to_dict,
    load_config,
)
from mega_pipe.model.losses import tp_cross_entropy
from mega_pipe.model.mega import (
    MEGA,
    EncoderLayer,
    SynopsisModel,
    align_bins,
    normalised_positions,
)
from mega_pipe.model.summary import count_parameters, model_summary

SCENE_DIMS = {"bassl": 2048, "place": 2048, "clip": 512}
ACT_DIMS = {"appr": 2048, "clip": 512, "action": 512, "place": 2048, "audio": 768, "subtitle": 384}
TINY_SYNOPSIS = {"max_len": 12, "n_bottleneck": 3, "dropout": 0.0, "n_layers": 1}


def tiny_config(task: str = "act", **overrides) -> MegaConfig:
    """A small model with the packaged task config's structure (PE kind, N_u, N_f, ...)."""
    small = dict(max_len=48, n_bottleneck=4, width=16, ffn_width=32, n_heads=2, dropout=0.0)
    if task == "act":
        small["synopsis"] = TINY_SYNOPSIS
    small.update(overrides)
    return load_config(task, **small)


def random_batch(dims: dict[str, int], lengths: list[int], pad_to: int, seed: int = 0):
    """Features with garbage in the padded slots (they must be ignored) and the matching mask."""
    gen = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(len(lengths), pad_to, d, generator=gen) for m, d in dims.items()}
    mask = torch.arange(pad_to)[None, :] < torch.tensor(lengths)[:, None]
    return feats, mask


# --- size fidelity (docs/model.md parameter-count check, Tab. 2g) -----------------------------


def test_scene_parameter_count_matches_paper():
    summary = model_summary("scene", SCENE_DIMS)
    layer = 7_087_872  # one 768/3072 post-LN layer
    linears = sum(d * 768 + 768 for d in SCENE_DIMS.values())
    # PE, Align.PE, bottleneck, LayerNorm, missing embedding
    per_modality_tables = 17 * 768 + 2 * 768 + 2 * 768 + 2 * 768 + 768
    expected = 9 * layer + linears + 3 * per_modality_tables + (3 * 768 * 2 + 2)
    assert summary["parameters"] == expected
    assert abs(summary["parameters"] - 67.57e6) / 67.57e6 < 0.01
    assert sum(summary["parameters_by_part"].values()) == summary["parameters"]


def test_act_summary_counts_both_networks():
    summary = model_summary("act", ACT_DIMS)
    parts = summary["parameters_by_part"]
    assert "positional" not in parts  # sinusoidal PE: a buffer, no parameters (docs/model.md choice 2)
    assert parts["synopsis_model"] > 0
    assert sum(parts.values()) == summary["parameters"]
    assert 5e6 < summary["parameters"] < 8e6  # the paper's 6.78M, up to unknown input dims
    assert summary["config"]["task"] == "act"


# --- config -----------------------------------------------------------------------------------


def test_packaged_configs_and_overrides(tmp_path):
    scene, act = load_config("scene"), load_config("act")
    assert (scene.max_len, scene.n_bottleneck, scene.width, scene.ffn_width) == (17, 2, 768, 3072)
    assert (scene.n_unimodal, scene.n_fusion, scene.n_classes, scene.positional) == (2, 1, 2, "learned")
    assert (act.max_len, act.n_bottleneck, act.width, act.ffn_width, act.dropout) == (3000, 100, 128, 128, 0.5)
    assert act.positional == "sinusoidal" and act.synopsis.max_len == 60
    assert load_config("scene", dropout=0.0).dropout == 0.0

    path = tmp_path / "custom.json"
    path.write_text(json.dumps(config_to_dict(act)))
    assert load_config(str(path)) == act
    assert config_from_dict(config_to_dict(act)) == act
    assert MegaConfig(**{**vars(act)}) == act


@pytest.mark.parametrize(
    "source, overrides, message",
    [
        ("scene", {"heads": 8}, "heads: unknown key"),
        ("scene", {"n_heads": 5}, "not divisible"),
        ("scene", {"positional": "rotary"}, "positional"),
        ("act", {"synopsis": {"max_len": 60}}, "synopsis"),
        ("act", {"train": {"sync": {"space": "fusion"}}}, "sync.space"),
        ("act", {"train": {"distill": {"temperature": 0.1}}}, "train.distill.temperature: unknown key"),
        ("no/such/config.json", {}, "neither a packaged config"),
    ],
)
def test_bad_configs_are_user_errors(source, overrides, message):
    with pytest.raises(MegaPipeError, match=message):
        load_config(source, **overrides)


# --- forward ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_modalities", [1, 2, 3, 4])
def test_forward_shapes(n_modalities):
    dims = dict(list({"a": 7, "b": 33, "c": 5, "d": 64}.items())[:n_modalities])
    cfg = tiny_config("scene")
    model = MEGA(cfg, dims)
    assert model.modalities == list(dims)
    feats, mask = random_batch(dims, [17, 12], 17)
    out = model(feats, mask)
    assert out.logits.shape == (2, 17, 2)
    assert out.shot_emb.shape == (2, 17, 16 * n_modalities)
    assert torch.isfinite(out.logits).all()


def test_padding_does_not_change_real_outputs():
    dims = {"clip": 12, "audio": 6}
    model = MEGA(tiny_config(), dims).eval()
    feats, mask = random_batch(dims, [20, 9, 31], 31, seed=1)
    with torch.no_grad():
        batched = model(feats, mask)
        for row, length in enumerate([20, 9, 31]):
            alone = model({m: f[row : row + 1, :length] for m, f in feats.items()}, mask[row : row + 1, :length])
            torch.testing.assert_close(batched.logits[row, :length], alone.logits[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(batched.shot_emb[row, :length], alone.shot_emb[0], atol=1e-5, rtol=1e-4)


def test_align_pe_uses_true_length():
    short = torch.arange(12)[None, :] < 10
    long = torch.arange(40)[None, :] < 10
    expected = torch.tensor([min(i * 4 // 10, 3) for i in range(10)])
    assert torch.equal(align_bins(normalised_positions(short), 4)[0, :10], expected)
    assert torch.equal(align_bins(normalised_positions(long), 4)[0, :10], expected)

    dims = {"clip": 8}
    model = MEGA(tiny_config(), dims).eval()
    feats, mask = random_batch(dims, [10], 40)
    with torch.no_grad():
        default = model(feats, mask).logits[0, :10]
        true_length = model(feats, mask, positions=torch.arange(40.0)[None] / 10).logits[0, :10]
        padded_length = model(feats, mask, positions=torch.arange(40.0)[None] / 40).logits[0, :10]
    torch.testing.assert_close(default, true_length)
    assert not torch.allclose(default, padded_length, atol=1e-4)  # the bins really matter


def test_fully_padded_rows_give_no_nan():
    dims = {"clip": 8, "place": 4}
    model = MEGA(tiny_config(dropout=0.1), dims).train()
    feats, mask = random_batch(dims, [0, 5], 16)
    out = model(feats, mask)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.shot_emb).all()
    out.logits[1, :5].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_fusion_layer_equals_full_attention_over_concatenation():
    """Updating [B_m; x_m] against memory = other bottlenecks equals Tab. 1a's full concat layer."""
    layer = EncoderLayer(16, 32, 2, 0.0).eval()
    torch.manual_seed(0)
    memory, x = torch.randn(2, 6, 16), torch.randn(2, 9, 16)
    key_mask = torch.arange(9)[None, :] < torch.tensor([[9], [5]])
    full = layer(torch.cat([memory, x], 1), torch.cat([torch.ones(2, 6, dtype=torch.bool), key_mask], 1))
    torch.testing.assert_close(layer(x, key_mask, memory=memory), full[:, 6:], atol=1e-5, rtol=1e-4)


def test_fusion_passes_information_between_modalities():
    """Modality a's fused shot tokens depend on modality b's features (via the bottlenecks)."""
    torch.manual_seed(0)
    dims = {"a": 4, "b": 4}
    model = MEGA(tiny_config(), dims).eval()
    feats, mask = random_batch(dims, [10], 10)
    with torch.no_grad():
        a_before = model(feats, mask).shot_emb[..., :16]
        a_after = model({"a": feats["a"], "b": 10 * torch.randn(1, 10, 4)}, mask).shot_emb[..., :16]
    assert (a_before - a_after).abs().max() > 1e-5  # float noise is ~1e-7; near-uniform attention at init


def test_ablation_switches():
    dims = {"clip": 8, "place": 4}
    full = MEGA(tiny_config(), dims)
    no_align = MEGA(tiny_config(align_pe=False), dims)
    no_bottleneck_align = MEGA(tiny_config(align_pe_in_bottleneck=False), dims)
    assert count_parameters(full) - count_parameters(no_align) == 2 * 4 * 16
    assert count_parameters(no_bottleneck_align) == count_parameters(full)
    feats, mask = random_batch(dims, [7], 7)
    for model in (no_align, no_bottleneck_align):
        assert model(feats, mask).logits.shape == (1, 7, 5)


def test_bad_inputs_are_value_errors():
    dims = {"clip": 8}
    model = MEGA(tiny_config(), dims)
    feats, mask = random_batch(dims, [49], 49)
    with pytest.raises(ValueError, match="max_len.*chunks"):
        model(feats, mask)
    feats, mask = random_batch(dims, [5], 5)
    with pytest.raises(ValueError, match="modalities"):
        model({"audio": feats["clip"]}, mask)
    with pytest.raises(ValueError, match="shape"):
        model({"clip": feats["clip"][..., :4]}, mask)
    with pytest.raises(ValueError, match="bool"):
        model(feats, mask.float())
    with pytest.raises(ValueError, match="positions"):
        model(feats, mask, positions=torch.full(mask.shape, 2.0))


# --- trainability -----------------------------------------------------------------------------


def test_tiny_act_model_overfits_toy_problem():
    """Per-TP softmax over shots (Eq. 7) learns where each movie's 5 TPs are."""
    torch.manual_seed(0)
    dims = {"clip": 12, "audio": 6}
    lengths = [40, 31, 24]
    model = MEGA(tiny_config(), dims).train()
    feats, mask = random_batch(dims, lengths, 40, seed=3)
    targets = []
    for length in lengths:
        target = torch.zeros(length, 5)
        target[torch.randperm(length)[:5], torch.arange(5)] = 1.0
        targets.append(target)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_fn() -> torch.Tensor:
        logits = model(feats, mask).logits
        return sum(tp_cross_entropy(logits[b, :n], t) for b, (n, t) in enumerate(zip(lengths, targets)))

    first = loss_fn().item()
    for _ in range(40):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.1 * first


# --- synopsis model ---------------------------------------------------------------------------


def test_content_embeddings_carry_no_position():
    """The synchronisation space of ``train.sync.space = "content"``: what a shot or sentence shows,
    so reordering the inputs reorders the embeddings (the fused u_i and v_j depend on position)."""
    cfg = tiny_config("act")
    dims = {"a": 6, "b": 4}
    model, synopsis = MEGA(cfg, dims).eval(), SynopsisModel(cfg, 10, len(dims)).eval()
    feats = {m: torch.randn(1, 9, d) for m, d in dims.items()}
    order = torch.randperm(9)
    shuffled = {m: f[:, order] for m, f in feats.items()}
    with torch.no_grad():
        c, c_shuffled = model.content_embeddings(feats), model.content_embeddings(shuffled)
        mask = torch.ones(1, 9, dtype=torch.bool)
        u, u_shuffled = model(feats, mask).shot_emb, model(shuffled, mask).shot_emb
    assert c.shape == (1, 9, cfg.width * 2)
    torch.testing.assert_close(c_shuffled, c[:, order])
    assert not torch.allclose(u_shuffled, u[:, order], atol=1e-3)
    sents = torch.randn(1, 7, 10)
    torch.testing.assert_close(synopsis.content_embeddings(sents[:, [6, 0, 1, 2, 3, 4, 5]]),
                               synopsis.content_embeddings(sents)[:, [6, 0, 1, 2, 3, 4, 5]])


def test_synopsis_model_shapes_and_padding():
    cfg = tiny_config()
    model = SynopsisModel(cfg, sentence_dim=10, n_modalities=3).eval()
    sents = torch.randn(2, 12, 10)
    mask = torch.arange(12)[None, :] < torch.tensor([[12], [7]])
    with torch.no_grad():
        logits, emb = model(sents, mask)
        alone_logits, alone_emb = model(sents[1:, :7], mask[1:, :7])
    assert logits.shape == (2, 12, 5) and emb.shape == (2, 12, 16 * 3)
    torch.testing.assert_close(logits[1, :7], alone_logits[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(emb[1, :7], alone_emb[0], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.randn(1, 13, 10), torch.ones(1, 13, dtype=torch.bool))
    with pytest.raises(ValueError, match="synopsis"):
        SynopsisModel(tiny_config("scene"), 10, 3)


# --- Align.PE and the bottleneck carry information (issue 10 part 1, docs/model.md) ------------


def _copy_into(target: MEGA, source: MEGA) -> None:
    """Every parameter ``target`` shares with ``source`` (by name) gets ``source``'s value."""
    state = {k: v for k, v in source.state_dict().items() if k in target.state_dict()}
    target.load_state_dict(state, strict=False)


def test_window_relative_align_pe_folds_into_the_learned_pe():
    """Why the scene default cannot be window-relative Align.PE with free tokens: every window
    has 17 real shots, so bin(i/17) is a fixed function of the index i and the learned PE plus
    free bottleneck tokens absorb the table exactly (the review's finding, kept as a check)."""
    torch.manual_seed(0)
    dims = {"a": 6, "b": 5}
    cfg = dict(max_len=17, n_bottleneck=2, bottleneck_seed="none")
    on = MEGA(tiny_config("scene", **cfg), dims).eval()
    off = MEGA(tiny_config("scene", align_pe=False, **cfg), dims).eval()
    _copy_into(off, on)
    bins = align_bins(torch.arange(17.0) / 17, 2)
    with torch.no_grad():
        for m in dims:
            table = on.streams[m].align_pe.table
            off.streams[m].shot_encoder.position.table.copy_(on.streams[m].shot_encoder.position.table + table[bins])
            off.streams[m].bottleneck.tokens.copy_(on.streams[m].bottleneck.tokens + table)
        feats, mask = random_batch(dims, [17] * 4, 17)
        torch.testing.assert_close(off(feats, mask).logits, on(feats, mask).logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("task", ["scene", "act"])
def test_align_pe_sees_the_movie_position_no_regular_pe_can(task):
    """Two inputs identical except for where they sit in the movie (scene: movie scope, the
    window's global_shot_idx / n_shots; act: the relative time i / n_shots of a movie of another
    length). Without Align.PE the model never reads the position, so *every* choice of its
    parameters gives the two inputs identical outputs; with Align.PE they differ. No
    re-parametrisation of the model without Align.PE can reproduce the model with it."""
    torch.manual_seed(0)
    dims = {"a": 6, "b": 5}
    extra = {"max_len": 17, "n_bottleneck": 2} if task == "scene" else {}
    length = 17 if task == "scene" else 30
    feats, mask = random_batch(dims, [length, length], length)
    feats = {m: f[:1].expand(2, -1, -1).contiguous() for m, f in feats.items()}   # identical rows
    index = torch.arange(length, dtype=torch.float32)
    if task == "scene":   # the first window of a 1000-shot movie vs one at its end
        positions = torch.stack([index / 1000, (983 + index) / 1000])
    else:                 # the same 30 shots as a whole movie vs as the first 30 of 120 shots
        positions = torch.stack([index / length, index / 120])
    with torch.no_grad():
        on = MEGA(tiny_config(task, **extra), dims).eval()(feats, mask, positions).shot_emb
        off = MEGA(tiny_config(task, align_pe=False, **extra), dims).eval()(feats, mask, positions).shot_emb
    assert (on[0] - on[1]).abs().max() > 1e-3
    # equal up to float rounding (batch rows may take different CPU kernel paths)
    torch.testing.assert_close(off[0], off[1], rtol=0, atol=1e-6)


def _fit_residual(on: MEGA, off: MEGA, feats, mask, steps: int = 150) -> float:
    """Fit ``off``'s free embedding parameters (bottleneck tokens, PE and Align.PE tables) by
    gradient descent to ``on``'s fused shot embeddings; the relative residual left."""
    with torch.no_grad():
        target = on(feats, mask).shot_emb
    free = [p for n, p in off.named_parameters() if n.endswith(("bottleneck.tokens", "position.table", "align_pe.table"))]
    for p in off.parameters():
        p.requires_grad_(False)
    for p in free:
        p.requires_grad_(True)
    opt = torch.optim.Adam(free, lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = (off(feats, mask).shot_emb - target).pow(2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((off(feats, mask).shot_emb - target).pow(2).mean() / target.var())


def test_align_pe_in_the_bottleneck_changes_what_the_tokens_summarise():
    """Tab. 2b switch. Free tokens (``bottleneck_seed`` "none"): token k + Align.PE row k is just
    another free token, and fitting the switched-off model's free parameters reproduces the
    switched-on one (residual -> 0). Seeded tokens ("bin_mean", the packaged default): token k
    starts from the mean of its Align.PE bin's shots with the switch on, of all shots without;
    that difference depends on the input, so no setting of the free parameters reproduces it
    and the same fit leaves a residual."""
    torch.manual_seed(0)
    dims = {"a": 6, "b": 5}
    feats, mask = random_batch(dims, [17] * 12, 17, seed=3)
    residual = {}
    for seed in ("none", "bin_mean"):
        cfg = dict(max_len=17, n_bottleneck=2, bottleneck_seed=seed)
        on = MEGA(tiny_config("scene", **cfg), dims).eval()
        with torch.no_grad():   # weights of a trained size: at BERT init (std 0.02) attention is
            for module in on.modules():   # nearly uniform and the bottleneck barely matters
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(std=0.25)
        off = MEGA(tiny_config("scene", align_pe_in_bottleneck=False, **cfg), dims).eval()
        _copy_into(off, on)
        if seed == "none":   # the exact re-parametrisation
            exact = MEGA(tiny_config("scene", align_pe_in_bottleneck=False, **cfg), dims).eval()
            _copy_into(exact, on)
            with torch.no_grad():
                for m in dims:
                    exact.streams[m].bottleneck.tokens += on.streams[m].align_pe.table
                torch.testing.assert_close(exact(feats, mask).logits, on(feats, mask).logits)
        residual[seed] = _fit_residual(on, off, feats, mask)
    assert residual["none"] < 1e-4
    assert residual["bin_mean"] > 100 * residual["none"] and residual["bin_mean"] > 1e-3


def test_bin_mean_seed_is_the_mean_of_each_bins_real_shots():
    from mega_pipe.model.mega import bin_means
    shots = torch.arange(12.0).view(1, 6, 2)
    bins = torch.tensor([[0, 0, 1, 1, 1, 2]])
    mask = torch.tensor([[True, True, True, False, True, False]])
    expected = torch.tensor([[[1.0, 2.0], [6.0, 7.0], [0.0, 0.0]]])   # bin 2's only shot is padding
    torch.testing.assert_close(bin_means(shots, bins, mask, 3), expected)


def test_old_checkpoints_keep_free_bottleneck_tokens():
    from mega_pipe.model.config import checkpoint_config
    data = config_to_dict(load_config("scene-small"))
    del data["bottleneck_seed"]
    assert checkpoint_config(data, "ckpt").bottleneck_seed == "none"
    # the paper's free tokens in the paper configs; the bin-mean seed is a named variant's
    assert load_config("scene").bottleneck_seed == "none" == load_config("act").bottleneck_seed
    assert load_config("scene-relational").bottleneck_seed == "bin_mean" == load_config("act-sync").bottleneck_seed


def test_act_size_with_paper_plausible_features_is_the_papers():
    """docs/model.md: 2048-d appr/action/place/audio, 768-d CLIP and 768-d sentence vectors
    give 6,774,026 = 6.77M for the paper config (Tab. 2h: 6.78M); the act-sync variant's
    position head adds its 40 x 5 bins."""
    dims = {"appr": 2048, "clip": 768, "action": 2048, "place": 2048, "audio": 2048, "subtitle": 768}
    assert model_summary("act", dims, sentence_dim=768)["parameters"] == 6_774_026
    with_head = MEGA(load_config("act", position_bins=40), dims)
    assert count_parameters(with_head) - count_parameters(MEGA(load_config("act"), dims)) == 200


def _centred_cosines(x):
    """Cosine similarities of a window's shots after centring on their mean (all shots real)."""
    x = x - x.mean(dim=0)
    x = x / x.norm(dim=1, keepdim=True)
    return x @ x.T


def test_cut_relations_are_relative_offsets_and_the_best_match_across_the_cut():
    from mega_pipe.model.mega import cut_relations
    feats, mask = random_batch({"clip": 6}, [17, 11], 17)
    rel = cut_relations(feats["clip"], mask, 17)
    assert rel.shape == (2, 17, 20)
    sim = _centred_cosines(feats["clip"][0])
    offsets = [d for d in range(-8, 9) if d != 0]
    for i in (0, 5, 8, 16):
        for col, d in enumerate(offsets):   # column = offset, whatever i's place in the window
            expected = sim[i, i + d] if 0 <= i + d < 17 else torch.tensor(0.0)
            torch.testing.assert_close(rel[0, i, col], expected)
        for k, w in enumerate((1, 2, 3, 4)):
            pairs = [sim[a, b] for a in range(max(0, i - w + 1), i + 1) for b in range(i + 1, min(17, i + w + 1))]
            torch.testing.assert_close(rel[0, i, 16 + k], torch.stack(pairs).max() if pairs else torch.tensor(-1.0))
    # a padded shot is never matched: the cut after the last real shot has no pair
    assert (rel[1, 10, 16:] == -1).all() and (rel[1, 11:, :16] == 0).all()


def test_relation_features_switch():
    dims = {"clip": 8, "place": 4}
    cfg = dict(max_len=17, n_bottleneck=2, width=16, ffn_width=32, n_heads=2, dropout=0.0)
    plain, rel = MEGA(load_config("scene", **cfg), dims), MEGA(load_config("scene", relation_features="cut", **cfg), dims)
    assert count_parameters(rel) - count_parameters(plain) == 2 * (20 * 16 + 16)   # Linear(16 + 4 -> C) per modality
    feats, mask = random_batch(dims, [17, 9], 17)
    present = {"place": torch.zeros(2, 17, dtype=torch.bool)}
    out = rel(feats, mask, present=present)
    assert out.logits.shape == (2, 17, 2) and torch.isfinite(out.logits).all()
    # the window's relations change the logits: permuting the *other* shots' content matters
    shuffled = {m: f.clone() for m, f in feats.items()}
    shuffled["clip"][0, 9:] = shuffled["clip"][0, 9:].flip(0)
    rel.eval()
    assert not torch.allclose(rel(feats, mask).logits[0, 8], rel(shuffled, mask).logits[0, 8])
    with pytest.raises(MegaPipeError, match="relation_features: only for task"):
        tiny_config("act", relation_features="cut")


def test_projected_relations_are_learned_through_the_shot_encoder():
    dims = {"clip": 8}
    cfg = dict(max_len=17, n_bottleneck=2, width=16, ffn_width=32, n_heads=2, dropout=0.0, relation_features="cut")
    feats, mask = random_batch(dims, [17], 17)
    projected = MEGA(load_config("scene", **cfg), dims)
    encoder = projected.streams["clip"].shot_encoder
    from mega_pipe.model.mega import cut_relations
    torch.testing.assert_close(encoder.relations(feats["clip"], mask), cut_relations(encoder.proj(feats["clip"]), mask, 17))
    # the relation term's gradient reaches the projection: the model learns what makes shots alike
    grad = torch.autograd.grad(encoder.relation(encoder.relations(feats["clip"], mask)).sum(), encoder.proj.weight)[0]
    assert grad.abs().sum() > 0


def test_checkpoints_of_removed_options_load_only_with_them_off():
    """Options measured and removed (issue 19): an old checkpoint that had them off loads; one
    trained with one of them on cannot be rebuilt and says so in one line."""
    from mega_pipe.model.config import checkpoint_config, config_to_dict
    data = config_to_dict(load_config("scene-relational"))
    old = {**data, "relation_space": "projected", "align_scope": "sequence", "n_classes": 2}
    assert checkpoint_config(old, "ckpt") == load_config("scene-relational")
    assert checkpoint_config({**data, "relation_features": False}, "ckpt").relation_features == "none"
    for bad in ({"relation_features": True}, {"relation_space": "input"}, {"align_scope": "movie"}):
        with pytest.raises(MegaPipeError, match="ckpt: trained with options that were measured and removed"):
            checkpoint_config({**old, **bad}, "ckpt")
    act = config_to_dict(load_config("act-sync"))
    act_old = {**act, "content_head": False, "content_context": 0, "context_window": 0,
               "train": {**act["train"], "content_probe": True,
                         "distill": {**act["train"]["distill"], "mask": "none", "start_epoch": 0.0}}}
    assert checkpoint_config(act_old, "ckpt") == load_config("act-sync")
    with pytest.raises(MegaPipeError, match="content_head=True"):
        checkpoint_config({**act_old, "content_head": True}, "ckpt")
    with pytest.raises(MegaPipeError, match="relation_features"):
        load_config("scene", relation_features=True)


# --- the act shot model's TP position head (docs/model.md choice 11) ----------------------------


def test_act_position_head_starts_as_the_tripod_prior():
    from mega_pipe.model.mega import tripod_log_prior
    from mega_pipe.model.prior import TRIPOD_TP_PRIOR
    dims = {"clip": 8, "place": 4}
    model = MEGA(tiny_config("act", position_bins=10), dims)
    plain = MEGA(tiny_config("act", position_bins=0), dims)
    assert count_parameters(model) - count_parameters(plain) == 10 * 5
    with torch.no_grad():
        model.head.proj.weight.zero_()   # no content: the logits are the head's bias + the prior
    feats, mask = random_batch(dims, [30, 20], 30)
    positions = torch.arange(30).float()[None].expand(2, -1) / torch.tensor([[30.0], [20.0]])
    positions = positions.masked_fill(~mask, 0.0)
    model.eval()
    logits = model(feats, mask, positions).logits
    prior = tripod_log_prior(10)
    torch.testing.assert_close(logits[0] - logits[0, :1], prior[(torch.arange(30) * 10) // 30] - prior[:1])
    # the mode of each TP's logits over the movie is where TRIPOD puts it
    modes = logits[0].argmax(dim=0).float() / 30
    assert all(abs(m - mean) < 0.1 for m, (mean, _) in zip(modes.tolist(), TRIPOD_TP_PRIOR))
    with pytest.raises(MegaPipeError, match="position_bins: only for tasks"):
        tiny_config("scene", position_bins=10)
