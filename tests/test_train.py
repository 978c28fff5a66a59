"""Training, resuming, evaluation and prediction on small synthetic sets (real models, real files)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.schema import read_manifest, write_manifest
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.model.config import config_to_dict, load_config
from mega_pipe.model.data import (
    UNLABELLED,
    MovieData,
    act_windows,
    choose_modalities,
    drop_modalities,
    pack_windows,
    read_movie,
    scene_label_array,
    scene_windows,
    stitch_windows,
)
from mega_pipe.model.evaluate import evaluate
from mega_pipe.model.metrics import read_records, score_records
from mega_pipe.model.predict import load_checkpoint, predict_act, predict_scene
from mega_pipe.model.tasks import task_for
from mega_pipe.model.train import TrainOptions, train

SMALL = SynthParams(scenes=(12, 18), sentences=(10, 14))
MODALITIES = {"clip": 16, "place": 12, "appr": 8}
SCENE_CFG = {"width": 32, "ffn_width": 64, "n_heads": 4, "n_unimodal": 1}
ACT_CFG = {"width": 16, "ffn_width": 32, "n_heads": 2, "n_bottleneck": 10}


def _train_dict(task: str, **keys) -> dict:
    """A ``train`` override: the packaged task config's section with ``keys`` replaced."""
    return {"train": {**config_to_dict(load_config(task))["train"], **keys}}


SCENE_OVERRIDES = {**SCENE_CFG, **_train_dict("scene", optimizer="adamw", warmup_epochs=0.5)}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), 8, seed=1, modalities=MODALITIES, params=SMALL)


@pytest.fixture(scope="module")
def scene_run(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("scene") / "run"
    summary = train("scene", manifest, out, TrainOptions(
        epochs=3, batch_size=64, lr=3e-3, device="cpu", config_overrides=SCENE_OVERRIDES, progress=False))
    return out, summary


# --- data layout --------------------------------------------------------------------------------


def test_scene_windows_are_clipped_not_padded():
    w = scene_windows(5)
    assert w.shape == (5, 17)
    assert list(w[0, :9]) == [0] * 9 and list(w[0, 9:]) == [1, 2, 3, 4, 4, 4, 4, 4]
    assert list(w[4, 8:]) == [4] * 9
    assert all(w[i, 8] == i for i in range(5))


def test_scene_labels_minus_one_and_null():
    labels = scene_label_array([0, -1, 1, None], 4, "m")
    assert labels.tolist() == [0, 1, 1, UNLABELLED]
    with pytest.raises(MegaPipeError, match="3 scene labels for 4 shots"):
        scene_label_array([0, 1, None], 4, "m")


def test_act_windows_cover_long_movies_and_stitch_averages():
    assert act_windows(10, 20) == [(0, 10)]
    windows = act_windows(25, 10)
    assert windows == [(0, 10), (5, 15), (10, 20), (15, 25)]
    movie = MovieData("m", {"a": np.arange(25, dtype=np.float32)[:, None]}, np.zeros((25, 2), np.int64))
    batch = pack_windows([movie], ["a"], 10, torch.device("cpu"))
    assert batch.feats["a"].shape == (4, 10, 1) and bool(batch.mask.all())
    # Positions are movie-global (i / n_shots) in every window, so Align.PE bins stay aligned.
    assert torch.allclose(batch.positions[1], torch.arange(5, 15) / 25.0)
    # Stitching per-window values that depend on the window gives the average over windows.
    values = batch.feats["a"] + torch.arange(4.0)[:, None, None] * 100
    (stitched,) = stitch_windows(values, batch)
    expected = [i + 100 * np.mean([k for k, (s, e) in enumerate(windows) if s <= i < e]) for i in range(25)]
    assert np.allclose(stitched[:, 0].numpy(), expected)


def test_modalities_default_to_those_in_every_movie(manifest):
    entries = read_manifest(manifest)
    assert choose_modalities(entries, None) == list(MODALITIES)
    assert choose_modalities(entries, ["place"]) == ["place"]
    # in no movie: most likely a misspelt name, said so with the names there are
    with pytest.raises(MegaPipeError, match=r"^unknown modality audio: the manifest's training movies have "
                       r"clip, place, appr$"):
        choose_modalities(entries, ["audio"])


def test_a_modality_only_some_movies_lack_names_the_movie(manifest, tmp_path):
    other = read_manifest(generate(tmp_path / "clip-only", 1, seed=2, modalities={"clip": 16}, params=SMALL))
    with pytest.raises(MegaPipeError, match=r"^movie synth0000 lacks modality place$"):
        choose_modalities([*other, *read_manifest(manifest)], ["place"])


# --- scene ---------------------------------------------------------------------------------------


def test_scene_training_writes_run_and_learns(scene_run):
    out, summary = scene_run
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    for r in lines:
        assert {"train", "val", "samples_per_s", "seconds", "lr", "select"} <= set(r)
        assert 0.0 <= r["val"]["ap"] <= 1.0 and r["samples_per_s"] > 0
    assert lines[-1]["train"]["loss"] < lines[0]["train"]["loss"]
    assert summary["best_epoch"] in (1, 2, 3) and summary["select_metric"] == "ap"
    best = load_checkpoint(out / "best.pt")
    assert best.info["epoch"] == summary["best_epoch"]
    assert best.modalities == list(MODALITIES) and best.cfg.width == 32


def test_resume_continues_and_matches_uninterrupted_run(manifest, tmp_path):
    kwargs = dict(epochs=2, batch_size=64, lr=3e-3, device="cpu", seed=5,
                  config_overrides=SCENE_OVERRIDES, progress=False)
    train("scene", manifest, tmp_path / "full", TrainOptions(**kwargs))

    def interrupt(record):
        assert record["epoch"] == 1
        raise KeyboardInterrupt  # the run dies after last.pt of epoch 1

    with pytest.raises(KeyboardInterrupt):
        train("scene", manifest, tmp_path / "cut", TrainOptions(on_epoch=interrupt, **kwargs))
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    with pytest.raises(MegaPipeError, match="already holds a run"):
        train("scene", manifest, tmp_path / "cut", TrainOptions(**kwargs))

    train("scene", manifest, tmp_path / "cut", TrainOptions(resume=True, epochs=2, device="cpu", progress=False))
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert cut["epoch"] == 2
    # Same batches, dropout masks, LR schedule and optimiser state: the same weights, up to the
    # last-bit differences CPU kernels show between any two runs (alignment-dependent SIMD paths).
    for name, tensor in full["model"].items():
        assert torch.allclose(tensor, cut["model"][name], rtol=1e-4, atol=1e-5), name
    full_log = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    cut_log = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in cut_log] == [1, 2]
    for f, c in zip(full_log, cut_log):
        assert c["lr"] == pytest.approx(f["lr"]) and c["train_samples"] == f["train_samples"]
        assert c["train"]["loss"] == pytest.approx(f["train"]["loss"], rel=1e-5)
        assert c["val"]["ap"] == pytest.approx(f["val"]["ap"], abs=1e-3)


def test_resume_needs_a_run(manifest, tmp_path):
    with pytest.raises(MegaPipeError, match="does not exist"):
        train("scene", manifest, tmp_path / "none", TrainOptions(resume=True, progress=False))


def test_evaluate_writes_metrics_and_scoreable_records(scene_run, manifest, tmp_path):
    out, _ = scene_run
    result = evaluate(out / "best.pt", manifest, "test", out=tmp_path, device="cpu")
    saved = json.loads((tmp_path / "eval_scene_test.json").read_text())
    assert saved["metrics"] == result["metrics"] and 0.0 <= result["metrics"]["ap"] <= 1.0
    records = read_records(tmp_path / "predictions_scene_test.jsonl")
    assert score_records("scene", records) == result["metrics"]  # what `mega-pipe score` recomputes
    n_test = sum(e.split == "test" for e in read_manifest(manifest))
    assert len(records) == n_test == result["n_movies"]


def test_predict_scene_shapes_and_missing_modality(scene_run, manifest, tmp_path):
    out, _ = scene_run
    entry = read_manifest(manifest)[0]
    probs = predict_scene(out / "best.pt", entry.features)
    assert probs.shape == (len(entry.scene_labels),)
    assert np.all((probs >= 0) & (probs <= 1))
    # A folder without one of the checkpoint's modalities is predicted without it; reading it
    # for training (no checkpoint dims) is refused, naming the modality.
    other = read_manifest(generate(tmp_path, 1, seed=2, modalities={"clip": 16, "place": 12}, params=SMALL))
    probs = predict_scene(out / "best.pt", other[0].features)
    assert probs.shape == (len(other[0].scene_labels),) and np.all(np.isfinite(probs))
    with pytest.raises(MegaPipeError, match="lacks modality appr"):
        read_movie(other[0].features, list(MODALITIES))
    with pytest.raises(MegaPipeError, match="of task 'scene', not 'act'"):
        predict_act(out / "best.pt", entry.features)


# --- act -----------------------------------------------------------------------------------------


def _tripod_setting(manifest, path):
    """A copy of the manifest whose training movies are labelled on synopsis sentences only."""
    entries = read_manifest(manifest)
    for e in entries:
        if e.split == "train":
            e.tp_shots = None
    write_manifest(path, entries)
    return path


def test_act_training_with_sync_distillation_and_long_movies(manifest, tmp_path, caplog):
    """Training movies without shot-level gold learn from the synopsis only (sync + distillation);
    max_len 24 forces every movie (50+ shots) through overlapping windows."""
    synopsis_only = _tripod_setting(manifest, tmp_path / "manifest.jsonl")
    overrides = {**ACT_CFG, "max_len": 24, **_train_dict("act", optimizer="adamw")}
    out = tmp_path / "act"
    summary = train("act", synopsis_only, out, TrainOptions(
        epochs=2, batch_size=2, lr=1e-3, device="cpu", config_overrides=overrides, progress=False))
    # the paper's fused sync in the TRIPOD setting: the user is told what was measured
    assert sum("TRIPOD setting" in r.message and "act-sync" in r.message for r in caplog.records) == 1
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in lines:
        assert set(r["train"]) == {"sync", "distill", "synopsis", "loss"}
        assert all(np.isfinite(v) for v in r["train"].values())
        assert {"ta", "pa", "d", "loss"} <= set(r["val"])
    assert summary["select_metric"] == "ta"

    entry = next(e for e in read_manifest(manifest) if e.split == "test")
    n_shots = len(entry.scene_labels)
    assert n_shots > 24
    posteriors = predict_act(out / "best.pt", entry.features)
    assert posteriors.shape == (5, n_shots)
    assert np.allclose(posteriors.sum(axis=1), 1.0, atol=1e-5)
    result = evaluate(out / "best.pt", synopsis_only, "test", device="cpu")
    assert set(result["metrics"]) >= {"ta", "pa", "d"}
    # The synthetic manifest maps shots to scenes: eval reports scene-level scores too, and the
    # prediction records carry the map so ``mega-pipe score`` reproduces them.
    assert result["metrics"]["scene_n_movies"] == result["n_movies"]
    assert {"scene_ta", "scene_pa", "scene_d"} <= set(result["metrics"])
    records = read_records(result["predictions"])
    assert all(len(r["shot_scenes"]) == len(r["posteriors"][0]) for r in records)
    # eval's metrics are the paper's metrics plus TRIPOD's position prior on the same movies
    assert {**score_records("act", records), **task_for("act").baseline_metrics(records)} == result["metrics"]


def test_act_training_uses_shot_gold_when_present(manifest, scene_run, tmp_path, caplog):
    out = tmp_path / "act"
    train("act", manifest, out, TrainOptions(
        epochs=1, batch_size=4, lr=1e-3, device="cpu",
        config_overrides={**ACT_CFG, **_train_dict("act", optimizer="adamw")}, progress=False))
    assert not any("TRIPOD setting" in r.message for r in caplog.records)
    (line,) = (out / "metrics.jsonl").read_text().splitlines()   # epoch 1 only: nothing untrained is a candidate
    assert json.loads(line)["epoch"] == 1
    losses = json.loads(line)["train"]
    # every training movie has shot gold: shot_tp teaches the shots, no distillation
    # (docs/training.md "Shot-level gold")
    assert set(losses) == {"sync", "synopsis", "shot_tp", "loss"}
    assert losses["loss"] == pytest.approx(sum(v for k, v in losses.items() if k != "loss"), rel=1e-5)

    # Both tasks evaluated into one folder: neither overwrites the other, each file scores.
    both = tmp_path / "eval"
    for task, ckpt in (("scene", scene_run[0] / "best.pt"), ("act", out / "best.pt")):
        evaluate(ckpt, manifest, "test", out=both, device="cpu")
    for task in ("scene", "act"):
        saved = json.loads((both / f"eval_{task}_test.json").read_text())
        assert saved["task"] == task
        records = read_records(both / f"predictions_{task}_test.jsonl")
        assert {**score_records(task, records), **task_for(task).baseline_metrics(records)} == saved["metrics"]

# --- missing modalities (docs/model.md) ------------------------------------------------------


AV = {"clip": 16, "audio": 8, "subtitle": 8}


@pytest.fixture(scope="module")
def av_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("av")
    manifest = generate(root / "synth", 6, seed=4, modalities=AV, params=SMALL)
    out = root / "run"
    train("scene", manifest, out, TrainOptions(
        epochs=2, batch_size=64, lr=3e-3, device="cpu", config_overrides=SCENE_OVERRIDES, progress=False))
    return manifest, out / "best.pt"


def _without_audio(src, dst):
    """A copy of a feature folder whose audio is absent the way extract writes it."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(src, dst)
    t = pq.read_table(dst / "shots.parquet")
    meta = json.loads(t.schema.metadata[b"mega_pipe"])
    meta["modalities"]["audio"]["absent"] = "movie has no audio stream"
    t = t.set_column(t.schema.get_field_index("audio"), "audio", pa.nulls(t.num_rows, t.schema.field("audio").type))
    t = t.set_column(t.schema.get_field_index("audio_count"), "audio_count", pa.array(np.zeros(t.num_rows, np.int32)))
    pq.write_table(t.replace_schema_metadata({b"mega_pipe": json.dumps(meta).encode()}), dst / "shots.parquet")
    return dst


def test_checkpoint_predicts_a_movie_without_one_of_its_modalities(av_run, tmp_path):
    manifest, ckpt = av_run
    entry = next(e for e in read_manifest(manifest) if e.split == "test")
    full = predict_scene(ckpt, entry.features)
    no_audio = predict_scene(ckpt, _without_audio(entry.features, tmp_path / "no_audio"))
    assert no_audio.shape == full.shape and np.all(np.isfinite(no_audio))
    assert np.all((no_audio >= 0) & (no_audio <= 1))
    assert not np.allclose(no_audio, full)          # audio was used, and is now masked
    movie = read_movie(tmp_path / "no_audio", list(AV), dims=AV)
    assert not movie.presence("audio").any() and movie.presence("clip").all()


def test_modality_dropout_drops_while_training_and_never_in_evaluation(av_run, monkeypatch, tmp_path):
    present = {m: torch.ones(200, 17, dtype=torch.bool) for m in AV}
    torch.manual_seed(0)
    first = drop_modalities(present, 0.3)
    torch.manual_seed(0)
    again = drop_modalities(present, 0.3)
    assert all(torch.equal(first[m], again[m]) for m in AV)          # seeded: reproducible
    rows = torch.stack([first[m][:, 0] for m in AV], dim=1)          # (200, M), whole rows
    assert all(torch.equal(first[m], first[m][:, :1].expand(-1, 17)) for m in AV)
    assert 0.15 < 1 - rows.float().mean() < 0.35 and rows.any(dim=1).all()   # never all dropped
    assert all(torch.equal(v, present[m]) for m, v in drop_modalities(present, 0.0).items())

    # Through the trainer: the forward passes of training drop, those of validation do not.
    from mega_pipe.model.mega import MEGA

    seen = []
    forward = MEGA.forward

    def spy(self, feats, mask, positions=None, present=None):
        seen.append((self.training, all(bool(p.all()) for p in (present or {}).values())))
        return forward(self, feats, mask, positions, present)

    monkeypatch.setattr(MEGA, "forward", spy)
    manifest, _ = av_run
    overrides = {**SCENE_CFG, **_train_dict("scene", modality_dropout=0.3)}
    train("scene", manifest, tmp_path / "run", TrainOptions(
        epochs=1, batch_size=64, lr=1e-3, device="cpu", config_overrides=overrides, progress=False))
    assert {complete for training, complete in seen if training} == {False}
    assert {complete for training, complete in seen if not training} == {True}
    with pytest.raises(MegaPipeError, match="modality_dropout"):
        load_config("scene", train={"modality_dropout": 1.0})


# --- training hygiene: weight-decay groups and gradient clipping ---------------------------------


def test_optimizer_groups_exempt_exactly_norms_biases_tables_and_tokens():
    from mega_pipe.model.mega import MEGA, SynopsisModel
    from mega_pipe.model.train import parameter_groups

    cfg = load_config("act-sync", width=16, ffn_width=32, n_heads=2, n_bottleneck=4, positional="learned")
    model, synopsis = MEGA(cfg, {"clip": 6, "place": 5}), SynopsisModel(cfg, 7, 2)
    groups = parameter_groups([model, synopsis], weight_decay=0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    names = {id(p): f"{i}.{n}" for i, m in enumerate([model, synopsis]) for n, p in m.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    exempt = {names[id(p)] for p in groups[1]["params"]}
    assert not decayed & exempt and decayed | exempt == set(names.values())
    # Independent of the implementation: by name. LayerNorms are *norm*, biases end in .bias.
    expected_exempt = {n for n in names.values() if n.endswith(".bias") or "norm." in n
                       or n.endswith(("position.table", "align_pe.table", "bottleneck.tokens", ".missing",
                                      "position_bias"))}
    assert exempt == expected_exempt and "0.position_bias" in exempt   # the act TP position head
    assert all(n.endswith(".weight") and "norm" not in n for n in decayed)   # linear / attention matrices
    assert any("position.table" in n for n in exempt) and any("align_pe.table" in n for n in exempt)


def test_grad_clip_is_a_train_key_and_bounds_the_step(monkeypatch, manifest, tmp_path):
    assert load_config("scene").train.grad_clip == 1.0 == load_config("act-small").train.grad_clip
    with pytest.raises(MegaPipeError, match="train.grad_clip"):
        load_config("scene", train={"grad_clip": -1})
    norms = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        params = list(params)
        total = real(params, max_norm, *a, **k)
        norms.append((float(total), float(torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in params if p.grad is not None]))), max_norm))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    train("scene", manifest, tmp_path / "run", TrainOptions(
        epochs=1, batch_size=64, lr=3e-3, device="cpu", progress=False,
        config_overrides={**SCENE_CFG, **_train_dict("scene", grad_clip=0.01)}))
    assert norms and all(max_norm == 0.01 and after <= 0.01 * 1.001 for _, after, max_norm in norms)
    assert any(before > 0.01 for before, _, _ in norms)


# --- distillation: which networks the teacher path reaches ---------------------------------------


def _act_run(manifest, config="act-small"):
    from mega_pipe.model.checkpoint import build_models
    from mega_pipe.model.data import Normalizer, load_entries
    from mega_pipe.model.tasks import Run
    cfg = load_config(config, **ACT_CFG)
    entries = [e for e in read_manifest(manifest) if e.split == "train"][:2]
    modalities = list(MODALITIES)
    movies = load_entries(entries, modalities, synopsis=True)
    norm = Normalizer.fit(movies, modalities, synopsis=True)
    for movie in movies:
        norm.apply(movie)
    dims = {m: int(movies[0].features[m].shape[1]) for m in modalities}
    sentence_dim = int(movies[0].synopsis.shape[1])
    torch.manual_seed(0)
    model, synopsis_model = build_models(cfg, dims, sentence_dim)
    return Run(cfg, {}, dims, sentence_dim, norm, movies, movies, model, synopsis_model, torch.device("cpu"))


def _distill_grads(run, epoch):
    """{parameter name: |grad| sum} of the synopsis network's parameters from the distillation alone."""
    from mega_pipe.model.tasks import ActTask
    run.set_train(False)   # no dropout: deterministic
    losses = ActTask().movie_losses(run, run.train_movies, epoch)
    params = dict(run.synopsis_model.named_parameters())
    grads = torch.autograd.grad(losses["distill"], list(params.values()), allow_unused=True)
    return {k: 0.0 if g is None else float(g.abs().sum()) for k, g in zip(params, grads)}


def test_distillation_skips_movies_with_shot_gold(manifest):
    from mega_pipe.model.tasks import ActTask
    run = _act_run(manifest)
    assert all(m.tp_shots is not None for m in run.train_movies)
    assert "distill" not in ActTask().movie_losses(run, run.train_movies, 1.0)   # shot_tp teaches them
    for movie in run.train_movies:   # synopsis labels only (TRIPOD): the teacher is the only signal
        movie.tp_shots = None
    losses = ActTask().movie_losses(run, run.train_movies, 1.0)
    assert "distill" in losses and "shot_tp" not in losses


def test_only_shot_gold_trains_the_position_head(manifest):
    """act-sync: the distillation trains the MEGA head alone; the position head learns from
    shot-level gold only, so synopsis-only training keeps it at TRIPOD's published prior."""
    from mega_pipe.model.tasks import ActTask
    run = _act_run(manifest, "act-sync")

    def head_grad():
        loss = ActTask().movie_losses(run, run.train_movies, 1.0)["loss"]
        (g,) = torch.autograd.grad(loss, [run.model.position_bias], allow_unused=True)
        return g is not None and float(g.abs().sum()) > 0
    run.set_train(False)
    assert head_grad()
    for movie in run.train_movies:
        movie.tp_shots = None
    assert not head_grad()


def test_the_papers_distillation_trains_the_synopsis_transformer_and_the_variants_does_not(manifest):
    """Eq. 8 as written (act-small: KL(O || P) with P attached, on the fused u and v) moves the
    synopsis transformer and its Align.PE; act-sync's detached teacher (KL(P || O)) reaches
    nothing of the synopsis network."""
    for config, reaches in (("act-small", True), ("act-sync", False)):
        run = _act_run(manifest, config)
        for movie in run.train_movies:
            movie.tp_shots = None
        grads = _distill_grads(run, 1.0)
        transformer = [k for k in grads if k.startswith("stream.unimodal.")]
        align_pe = [k for k in grads if k.startswith("stream.align_pe.")]
        assert transformer and align_pe
        if reaches:
            assert all(grads[k] > 0 for k in transformer) and any(grads[k] > 0 for k in align_pe)
        else:
            assert all(v == 0 for v in grads.values())


def test_synopsis_guidance_multiplies_the_shot_model_by_the_eq6_guide_with_predicted_labels(manifest):
    """``synopsis_guidance``: O·P_syn renormalised over the shots, P_syn = Eq. 5-6 with q the
    synopsis model's own softmax over the sentences (no label read); a movie without a synopsis,
    or a config without guidance, gets the shot model's O unchanged."""
    import dataclasses

    from mega_pipe.model.config import describe_model
    from mega_pipe.model.losses import teacher_log_distribution
    from mega_pipe.model.predict import act_posteriors
    run = _act_run(manifest, "act-sync")
    assert run.cfg.synopsis_guidance            # the packaged variant guides; switch it off first
    run.model.cfg = dataclasses.replace(run.model.cfg, synopsis_guidance=False)
    movie = run.train_movies[0]
    movie.tp_sentences = None          # nothing of the labels can be used
    plain = act_posteriors(run.model, [movie], list(MODALITIES), run.device)[0]
    assert np.allclose(act_posteriors(run.model, [movie], list(MODALITIES), run.device, run.synopsis_model)[0], plain)

    run.model.cfg = dataclasses.replace(run.model.cfg, synopsis_guidance=True)
    assert "synopsis_guidance" in describe_model(run.model.cfg)["additions"]
    guided = act_posteriors(run.model, [movie], list(MODALITIES), run.device, run.synopsis_model)[0]
    with torch.no_grad():
        run.set_train(False)
        sents = torch.as_tensor(movie.synopsis)[None]
        logits, _ = run.synopsis_model(sents, torch.ones(sents.shape[:2], dtype=torch.bool))
        q = torch.softmax(logits[0], dim=0)
        feats = {m: torch.as_tensor(movie.features[m])[None] for m in MODALITIES}
        u = run.model.content_embeddings(feats, {m: torch.as_tensor(movie.present[m])[None] for m in MODALITIES})[0]
        kd = run.cfg.train.distill
        log_guide = teacher_log_distribution(u, run.synopsis_model.content_embeddings(sents)[0], q,
                                             tau=kd.tau, cosine=kd.cosine, teacher_tau=kd.teacher_tau).numpy()
    expected = np.log(plain.T) + log_guide
    expected = np.exp(expected - expected.max(axis=0))
    assert np.allclose(guided, (expected / expected.sum(axis=0)).T, atol=1e-5)
    assert not np.allclose(guided, plain, atol=1e-3)
    no_synopsis = dataclasses.replace(movie, synopsis=None)
    assert np.allclose(act_posteriors(run.model, [no_synopsis], list(MODALITIES), run.device, run.synopsis_model)[0],
                       plain)
    with pytest.raises(MegaPipeError, match="synopsis_guidance.*only for task"):
        load_config("scene-small", synopsis_guidance=True)
