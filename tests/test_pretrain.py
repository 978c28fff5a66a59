"""``mega-pipe pretrain`` and ``train --init``: the objectives, the loop, the transfer into
MEGA, and the bad inputs (issue 22; docs/pretraining.md). Real synthetic feature folders
(``manifests.synth``), real Parquet, small randomly initialised models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from mega_pipe.manifests.features import FeatureFolder, shots_table, vectors_of
from mega_pipe.manifests.schema import read_manifest, write_manifest
from mega_pipe.manifests.synth import generate
from mega_pipe.model.config import load_config
from mega_pipe.model.pretrain import (
    PretrainModel,
    PretrainSettings,
    alignment_nce,
    hide_shots,
    masked_nce,
)
from mega_pipe.pipeline.cli import main

MODS = {"clip": 8, "audio": 6}
SCENE = {"task": "scene", "max_len": 9, "n_bottleneck": 2, "width": 16, "ffn_width": 32, "n_unimodal": 1,
         "n_fusion": 1, "n_heads": 2, "dropout": 0.1, "positional": "learned",
         "train": {"batch_size": 32, "epochs": 1}}
ACT = {"task": "act", "max_len": 3000, "n_bottleneck": 4, "width": 16, "ffn_width": 32, "n_unimodal": 1,
       "n_fusion": 1, "n_heads": 2, "dropout": 0.1, "positional": "sinusoidal",
       "synopsis": {"max_len": 60, "n_bottleneck": 4, "dropout": 0.1, "n_layers": 1},
       "train": {"batch_size": 2, "epochs": 1}}
PRE = ["--seq-len", "48", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pretrain")
    manifest = generate(root / "synth", 8, seed=3, modalities=MODS)
    # an unlabelled copy of the manifest: pretraining must not need any label
    write_manifest(root / "unlabelled.jsonl", [type(e)(e.movie_id, e.features, e.split)
                                               for e in read_manifest(manifest)])
    for name, cfg in (("scene", SCENE), ("act", ACT)):
        (root / f"{name}.json").write_text(json.dumps(cfg))
    assert main(["pretrain", "--manifest", str(root / "unlabelled.jsonl"), "--out", str(root / "pre"),
                 "--config", str(root / "scene.json"), "--pretrain-epochs", "2", *PRE]) == 0
    return {"root": root, "manifest": manifest, "unlabelled": root / "unlabelled.jsonl",
            "scene": root / "scene.json", "act": root / "act.json", "pre": root / "pre"}


# --- objectives ---------------------------------------------------------------------------------


def test_masked_nce_prefers_the_hidden_shots_own_feature():
    torch.manual_seed(0)
    target = torch.randn(2, 30, 16)
    query = torch.zeros(2, 30, dtype=torch.bool)
    query[:, ::5] = True
    keys = torch.ones(2, 30, dtype=torch.bool)
    right = masked_nce(target.clone(), target, query, keys, tau=0.1)
    wrong = masked_nce(target.roll(1, dims=1), target, query, keys, tau=0.1)
    assert right < 0.5 < wrong
    assert masked_nce(target, target, torch.zeros_like(query), keys, 0.1) is None
    # padding is never a candidate: masking out every key but the right one gives zero loss
    only = torch.eye(30, dtype=torch.bool)[None].expand(2, -1, -1)
    assert float(masked_nce(torch.randn(2, 30, 16), target, query & only[:, 0], only[:, 0], 0.1)) == pytest.approx(0.0)


def test_alignment_nce_pulls_the_same_shot_together_and_honours_the_window():
    torch.manual_seed(1)
    a = torch.randn(1, 40, 8)
    valid = torch.ones(1, 40, dtype=torch.bool)
    aligned = alignment_nce(a, a + 0.01 * torch.randn_like(a), valid, tau=0.1)
    shuffled = alignment_nce(a, a[:, torch.randperm(40)], valid, tau=0.1)
    assert aligned < 0.2 < shuffled
    # with a window of 0 shots every row has only its positive: the loss is exactly 0
    idx = torch.arange(40)
    assert float(alignment_nce(a, a[:, idx.roll(1)], valid, 0.1, window=0)) > 1.0
    assert alignment_nce(a, a, torch.zeros_like(valid), 0.1) is None


def test_hide_shots_hides_only_real_present_shots_at_the_ratio():
    mask = torch.ones(4, 200, dtype=torch.bool)
    mask[0, 150:] = False
    present = {"clip": mask.clone(), "audio": mask.clone()}
    present["audio"][1] = False
    hidden = hide_shots(mask, present, 0.2, torch.Generator().manual_seed(0))
    assert not (hidden["clip"] & ~mask).any() and not hidden["audio"][1].any()
    assert 0.15 < float(hidden["clip"].float().mean()) < 0.25
    assert not torch.equal(hidden["clip"], hidden["audio"])   # independent per modality


def test_the_encoders_have_megas_stream_names_and_shapes():
    from mega_pipe.model.mega import MEGA

    cfg = load_config("scene-small")
    pre = PretrainModel(cfg, MODS, PretrainSettings(seq_len=64))
    mega = MEGA(cfg, MODS)
    for m in MODS:
        theirs = {k: tuple(v.shape) for k, v in mega.streams[m].state_dict().items()}
        ours = {k: tuple(v.shape) for k, v in pre.streams[m].state_dict().items()}
        assert set(theirs) == set(ours)
        differ = {k for k in theirs if theirs[k] != ours[k]}
        assert differ == {"shot_encoder.position.table"}   # learned 17-row PE vs 64-shot samples


def test_losses_are_finite_and_every_objective_trains_the_encoders():
    torch.manual_seed(0)
    model = PretrainModel(load_config("scene-small"), MODS, PretrainSettings(seq_len=32))
    feats = {m: torch.randn(2, 32, d) for m, d in MODS.items()}
    mask = torch.ones(2, 32, dtype=torch.bool)
    mask[1, 20:] = False
    present = {m: mask.clone() for m in MODS}
    hidden = hide_shots(mask, present, 0.3, torch.Generator().manual_seed(0))
    losses = model.losses(feats, mask, present, hidden)
    assert set(losses) == {"intra", "inter", "cross", "loss"}
    assert all(torch.isfinite(v) for v in losses.values())
    for name in ("intra", "inter", "cross"):
        model.zero_grad()
        losses = model.losses(feats, mask, present, hidden)
        losses[name].backward()
        grad = model.streams["clip"].shot_encoder.proj.weight.grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


# --- the loop and its files ---------------------------------------------------------------------


def test_pretrain_writes_checkpoints_learns_and_resumes(world, capsys):
    pre = world["pre"]
    lines = [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and (pre / "best.pt").is_file()
    state = torch.load(pre / "last.pt", weights_only=True)
    assert state["task"] == "pretrain" and state["models"]["clip"]["model_id"] == "synthetic"
    assert main(["pretrain", "--manifest", str(world["unlabelled"]), "--out", str(pre), "--resume",
                 "--pretrain-epochs", "6", *PRE]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = [json.loads(x) for x in (pre / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5, 6] and summary["epochs"] == 6
    # it learns: the validation loss (fixed hiding draw) falls well below the first epoch's
    assert lines[-1]["val_loss"] < lines[0]["val_loss"] - 0.5, [r["val_loss"] for r in lines]


def test_train_init_loads_the_encoders_and_freeze_keeps_them(world, capsys):
    run = world["root"] / "scene-init"
    assert main(["train", "--task", "scene", "--manifest", str(world["manifest"]), "--out", str(run),
                 "--config", str(world["scene"]), "--init", str(world["pre"] / "best.pt"), "--freeze-init",
                 "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    pre = torch.load(world["pre"] / "best.pt", weights_only=True)["model"]
    trained = torch.load(run / "last.pt", weights_only=True)
    model = trained["model"]
    assert trained["settings"]["init_transfer"]["left_initialised"] == [
        "streams.clip.shot_encoder.position.table", "streams.audio.shot_encoder.position.table"]
    for m in MODS:
        for name in ("shot_encoder.proj.weight", "unimodal.0.ffn.0.weight", "align_pe.table"):
            assert torch.equal(model[f"streams.{m}.{name}"], pre[f"streams.{m}.{name}"]), name
    # the run's normaliser is the pretrained encoders' input transform
    assert trained["normalization"]["clip"] == torch.load(world["pre"] / "best.pt", weights_only=True)[
        "normalization"]["clip"]
    # and eval reads the checkpoint like any other
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--manifest", str(world["manifest"]),
                 "--device", "cpu"]) == 0
    assert "ap" in json.loads(capsys.readouterr().out)["metrics"]
    # without --freeze-init the encoders move
    run2 = world["root"] / "scene-init-free"
    assert main(["train", "--task", "scene", "--manifest", str(world["manifest"]), "--out", str(run2),
                 "--config", str(world["scene"]), "--init", str(world["pre"] / "best.pt"),
                 "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
    moved = torch.load(run2 / "last.pt", weights_only=True)["model"]
    assert not torch.equal(moved["streams.clip.shot_encoder.proj.weight"], pre["streams.clip.shot_encoder.proj.weight"])


def test_act_transfer_from_an_act_width_pretraining(world, capsys):
    pre = world["root"] / "pre-act"
    assert main(["pretrain", "--manifest", str(world["unlabelled"]), "--out", str(pre), "--config",
                 str(world["act"]), "--pretrain-epochs", "1", *PRE]) == 0
    run = world["root"] / "act-init"
    assert main(["train", "--task", "act", "--manifest", str(world["manifest"]), "--out", str(run),
                 "--config", str(world["act"]), "--init", str(pre / "best.pt"), "--epochs", "1",
                 "--device", "cpu", "--no-progress"]) == 0
    # sinusoidal PE is a buffer: everything is transferred
    assert torch.load(run / "last.pt", weights_only=True)["settings"]["init_transfer"]["left_initialised"] == []
    capsys.readouterr()


# --- bad input: one line, exit 2 ----------------------------------------------------------------


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mega-pipe: error: ") and "Traceback" not in err, err
    return lines[0]


def test_two_model_sets_in_one_manifest(world, tmp_path, capsys):
    other = generate(tmp_path / "other", 2, seed=9, modalities={"clip": 12, "audio": 6})
    entries = read_manifest(world["unlabelled"])[:3] + read_manifest(other)
    write_manifest(tmp_path / "mixed.jsonl", [type(e)(f"m{k}", e.features, "train") for k, e in enumerate(entries)])
    assert main(["pretrain", "--manifest", str(tmp_path / "mixed.jsonl"), "--out", str(tmp_path / "run"),
                 *PRE]) == 2
    line = _one_line(capsys)
    assert "modality clip" in line and "different model sets" in line
    assert not (tmp_path / "run").exists()
    # same dimension, other model: caught from the provenance, not the shapes
    folder = FeatureFolder(read_manifest(world["unlabelled"])[5].features)
    table = folder.read_shots()
    meta = {m: {**v, "model_id": "another-encoder"} for m, v in folder.modality_meta().items()}
    rewritten = _rewrite_shots(folder, table, MODS, meta, tmp_path / "same-dim")
    write_manifest(tmp_path / "mixed2.jsonl", [
        *[type(e)(e.movie_id, e.features, "train") for e in read_manifest(world["unlabelled"])[:2]],
        type(entries[0])("odd", rewritten, "train")])
    assert main(["pretrain", "--manifest", str(tmp_path / "mixed2.jsonl"), "--out", str(tmp_path / "run"),
                 *PRE]) == 2
    assert "another-encoder" in _one_line(capsys)


def _rewrite_shots(folder: FeatureFolder, table, dims: dict, meta: dict, dest: Path, rows: int | None = None,
                   absent: dict | None = None) -> Path:
    """A copy of ``folder`` whose shots.parquet has ``meta`` (and only ``rows`` shots, and
    ``absent`` modalities), written through the contract's own writer."""
    import shutil
    from types import SimpleNamespace

    shutil.copytree(folder.path, dest)
    n = table.num_rows if rows is None else rows
    shots = [SimpleNamespace(index=i, start_frame=int(table["start_frame"][i].as_py()),
                             end_frame=int(table["end_frame"][i].as_py()), start_s=float(table["start_s"][i].as_py()),
                             end_s=float(table["end_s"][i].as_py())) for i in range(n)]
    pooled = {m: (vectors_of(table[m])[:n], np.ones(n, np.int32)) for m in dims if not (absent and m in absent)}
    meta = {m: {**meta[m], "dim": d} for m, d in dims.items()}
    FeatureFolder(dest).write_shots(shots_table(table["movie_id"][0].as_py() if table.num_rows else "x",
                                                shots, pooled, meta, absent=absent))
    return dest


def test_a_folder_without_shots(world, tmp_path, capsys):
    folder = FeatureFolder(read_manifest(world["unlabelled"])[0].features)
    empty = _rewrite_shots(folder, folder.read_shots(), MODS, folder.modality_meta(), tmp_path / "empty", rows=0)
    assert pq.ParquetFile(FeatureFolder(empty).shots_path).metadata.num_rows == 0
    write_manifest(tmp_path / "m.jsonl", [
        *[type(e)(e.movie_id, e.features, "train") for e in read_manifest(world["unlabelled"])[:2]],
        type(read_manifest(world["unlabelled"])[0])("empty", empty, "train")])
    assert main(["pretrain", "--manifest", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "run"), *PRE]) == 2
    assert "has no shots" in _one_line(capsys)


def test_init_with_a_checkpoint_of_another_task_or_shape(world, tmp_path, capsys):
    scene_ckpt = world["root"] / "scene-init" / "best.pt"
    if not scene_ckpt.exists():   # this test run alone: make one
        assert main(["train", "--task", "scene", "--manifest", str(world["manifest"]), "--out",
                     str(scene_ckpt.parent), "--config", str(world["scene"]), "--epochs", "1", "--device", "cpu",
                     "--no-progress"]) == 0
        capsys.readouterr()
    common = ["--manifest", str(world["manifest"]), "--epochs", "1", "--device", "cpu", "--no-progress"]
    assert main(["train", "--task", "scene", "--config", str(world["scene"]), "--out", str(tmp_path / "a"),
                 "--init", str(scene_ckpt), *common]) == 2
    assert "is a checkpoint of task 'scene', not 'pretrain'" in _one_line(capsys)
    # a scene-width pretraining into an act model: the shapes differ, one line naming the fix
    assert main(["train", "--task", "act", "--config", str(world["act"]), "--out", str(tmp_path / "b"),
                 "--init", str(world["pre"] / "best.pt"), *common]) == 2
    line = _one_line(capsys)
    assert "in the checkpoint but" in line and "pretrain with this run's --config" in line
    # a pretraining checkpoint is not something eval or --resume accept either
    assert main(["eval", "--checkpoint", str(world["pre"] / "best.pt"), "--manifest", str(world["manifest"]),
                 "--out", str(tmp_path / "c"), "--device", "cpu"]) == 2
    _one_line(capsys)
    assert main(["train", "--task", "scene", "--config", str(world["scene"]), "--out", str(tmp_path / "d"),
                 "--freeze-init", *common]) == 2
    assert "--freeze-init needs --init" in _one_line(capsys)
    assert not any((tmp_path / x).exists() for x in "abcd")
