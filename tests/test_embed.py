"""``mega-pipe embed``: embeddings.parquet in the feature-folder contract (docs/contract.md), read
by pyarrow, polars and duckdb with one schema across a mixed catalogue; reruns do no work;
a killed write leaves nothing partial; the linear-probe report (issue 22)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from mega_pipe.manifests.features import FeatureFolder, shots_table, vectors_of
from mega_pipe.manifests.schema import read_manifest, write_manifest
from mega_pipe.manifests.synth import generate
from mega_pipe.model.data import read_movie
from mega_pipe.model.pretrain_train import load_pretrain
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.embed import movie_embeddings

MODS = {"clip": 8, "audio": 6}
CFG = {"task": "scene", "max_len": 9, "n_bottleneck": 2, "width": 16, "ffn_width": 32, "n_unimodal": 1,
       "n_fusion": 1, "n_heads": 2, "dropout": 0.1, "positional": "learned"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("embed")
    manifest = generate(root / "synth", 8, seed=5, modalities=MODS)
    (root / "cfg.json").write_text(json.dumps(CFG))
    assert main(["pretrain", "--manifest", str(manifest), "--out", str(root / "pre"), "--config",
                 str(root / "cfg.json"), "--seq-len", "40", "--pretrain-epochs", "2", "--device", "cpu",
                 "--no-progress"]) == 0
    # a mixed catalogue: one movie without audio (an absent modality, docs/contract.md)
    entries = read_manifest(manifest)
    src = FeatureFolder(entries[0].features)
    mixed = root / "no-audio"
    _copy_without(src, mixed, "audio")
    return {"root": root, "manifest": manifest, "ckpt": root / "pre" / "best.pt",
            "folders": [e.features for e in entries], "mixed": mixed}


def _copy_without(src: FeatureFolder, dest: Path, modality: str) -> None:
    import shutil

    shutil.copytree(src.path, dest)
    table = src.read_shots()
    shots = [SimpleNamespace(index=i, start_frame=table["start_frame"][i].as_py(), end_frame=table["end_frame"][i].as_py(),
                             start_s=table["start_s"][i].as_py(), end_s=table["end_s"][i].as_py())
             for i in range(table.num_rows)]
    pooled = {m: (vectors_of(table[m]), np.ones(table.num_rows, np.int32)) for m in MODS if m != modality}
    FeatureFolder(dest).write_shots(shots_table(src.movie_id, shots, pooled, src.modality_meta(),
                                                absent={modality: "no audio stream"}))


def _embed(world, *folders, capsys=None) -> dict:
    code = main(["embed", "--checkpoint", str(world["ckpt"]), *map(str, folders), "--no-progress"])
    assert code == 0
    return json.loads(capsys.readouterr().out) if capsys else {}


def test_embed_writes_the_contract_file_readable_everywhere(world, capsys):
    folders = [*world["folders"][:3], world["mixed"]]
    out = _embed(world, *folders, capsys=capsys)
    assert out["written"] == 4 and out["cached"] == 0
    import duckdb
    import polars as pl

    schemas = {str(pq.read_schema(FeatureFolder(f).embeddings_path).remove_metadata()) for f in folders}
    assert len(schemas) == 1   # one schema across the catalogue, the absent modality included
    full = FeatureFolder(folders[0]).read_embeddings()
    assert full.column_names == ["movie_id", "shot_idx", "start_frame", "end_frame", "clip", "audio", "fused"]
    assert full.num_rows == FeatureFolder(folders[0]).n_shots()
    assert full["shot_idx"].to_pylist() == FeatureFolder(folders[0]).read_shot_times()["shot_idx"].tolist()
    no_audio = FeatureFolder(world["mixed"]).read_embeddings()
    assert no_audio["audio"].null_count == no_audio.num_rows and no_audio["clip"].null_count == 0
    assert no_audio["fused"].null_count == 0
    paths = [str(FeatureFolder(f).embeddings_path) for f in folders]
    frame = pl.read_parquet(paths)
    assert frame.height == sum(FeatureFolder(f).n_shots() for f in folders)
    assert frame["audio"].null_count() == no_audio.num_rows
    con = duckdb.connect()
    n, nulls, width = con.execute(
        f"SELECT count(*), count(*) - count(audio), max(len(fused)) FROM read_parquet({paths!r})").fetchone()
    assert (n, nulls, width) == (frame.height, no_audio.num_rows, 16)
    meta = FeatureFolder(folders[0]).embeddings_meta()
    assert meta["modalities"] == ["clip", "audio"] and meta["width"] == 16


def test_the_file_holds_the_models_contextual_outputs(world):
    folder = FeatureFolder(world["folders"][1])
    _embed(world, folder)
    model, normalizer, _ = load_pretrain(world["ckpt"], "cpu")
    movie = normalizer.apply(read_movie(folder, model.modalities))
    per, fused = movie_embeddings(model, movie, torch.device("cpu"))
    table = folder.read_embeddings()
    assert np.allclose(vectors_of(table["clip"]), per["clip"], atol=1e-5)
    assert np.allclose(vectors_of(table["fused"]), fused, atol=1e-5)
    # context matters: the same shot in another context gets another embedding
    movie_cut = normalizer.apply(read_movie(folder, model.modalities))
    for m in movie_cut.features:
        movie_cut.features[m] = movie_cut.features[m][10:]
        movie_cut.present[m] = movie_cut.present[m][10:]
    movie_cut.shot_frames = movie_cut.shot_frames[10:]
    per_cut, _ = movie_embeddings(model, movie_cut, torch.device("cpu"))
    assert not np.allclose(per_cut["clip"][0], per["clip"][10], atol=1e-3)


def test_a_rerun_with_unchanged_inputs_does_no_work(world, capsys):
    folder = FeatureFolder(world["folders"][4])
    assert _embed(world, folder, capsys=capsys)["written"] == 1
    stamp = folder.embeddings_path.stat().st_mtime_ns
    again = _embed(world, folder, capsys=capsys)
    assert again["cached"] == 1 and again["written"] == 0
    assert folder.embeddings_path.stat().st_mtime_ns == stamp
    # a changed shots.parquet (same movie, other features) is recomputed
    table = folder.read_shots()
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"touched": b"1"}), folder.shots_path)
    assert _embed(world, folder, capsys=capsys)["written"] == 1


KILLER = """
import os, signal, sys
import pyarrow.parquet as pq
from mega_pipe.pipeline.cli import main
real = pq.write_table
def write_then_die(table, where, **kw):
    real(table.slice(0, 3), where, **kw)      # part of the file is on disk ...
    os.kill(os.getpid(), signal.SIGKILL)       # ... when the process is killed
pq.write_table = write_then_die
main(["embed", "--checkpoint", sys.argv[1], sys.argv[2], "--no-progress"])
"""


def test_sigkill_mid_write_leaves_nothing_partial(world, capsys):
    folder = FeatureFolder(world["folders"][5])
    run = subprocess.run([sys.executable, "-c", KILLER, str(world["ckpt"]), str(folder.path)],
                         check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert not folder.embeddings_path.exists()
    assert folder.stale_embedding_temps()   # the killed writer's temporary file, never read
    out = _embed(world, folder, capsys=capsys)
    assert out["written"] == 1 and not folder.stale_embedding_temps()
    assert folder.read_embeddings().num_rows == folder.n_shots()


def test_bad_inputs_are_one_line(world, tmp_path, capsys):
    pre_scene = tmp_path / "not-pretrain.pt"
    torch.save({"format": "mega-pipe-checkpoint/1", "task": "scene"}, pre_scene)
    assert main(["embed", "--checkpoint", str(pre_scene), str(world["folders"][0])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not 'pretrain'" in err[0]
    assert main(["embed", "--checkpoint", str(world["ckpt"]), str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    # features of another model set than the checkpoint's
    other = generate(tmp_path / "other", 1, seed=1, modalities={"clip": 12, "audio": 6})
    assert main(["embed", "--checkpoint", str(world["ckpt"]), str(read_manifest(other)[0].features),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "modality clip comes from model synthetic (12-d)" in err[0]


def test_probe_report(world, capsys):
    entries = read_manifest(world["manifest"])
    write_manifest(world["root"] / "probe.jsonl", entries)
    assert main(["embed", "--checkpoint", str(world["ckpt"]), "--probe", str(world["root"] / "probe.jsonl"),
                 "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)["probe"]
    assert set(report["results"]) == {"raw", "clip", "audio", "fused"}
    for r in report["results"].values():
        assert 0.0 <= r["ap"] <= 1.0 and r["input_dim"] > 0
    assert report["results"]["fused"]["input_dim"] == 64 and report["results"]["raw"]["input_dim"] == 56


def test_features_of_another_model_with_the_same_dims_are_embedded_with_a_warning(world, tmp_path, capsys):
    """As segment does: a checkpoint pretrained on synthetic features embeds a folder whose clip
    comes from the tiny set's model when the dimensions match, saying so once."""
    src = FeatureFolder(world["folders"][1])
    tiny = tmp_path / "tiny-clip"
    import shutil

    shutil.copytree(src.path, tiny)
    table = src.read_shots()
    shots = [SimpleNamespace(index=i, start_frame=table["start_frame"][i].as_py(), end_frame=table["end_frame"][i].as_py(),
                             start_s=table["start_s"][i].as_py(), end_s=table["end_s"][i].as_py())
             for i in range(table.num_rows)]
    meta = src.modality_meta()
    meta["clip"] = {**meta["clip"], "model_id": "clip-tiny", "weights_sha256": "abc"}
    pooled = {m: (vectors_of(table[m]), np.ones(table.num_rows, np.int32)) for m in MODS}
    FeatureFolder(tiny).write_shots(shots_table(src.movie_id, shots, pooled, meta))
    assert main(["embed", "--checkpoint", str(world["ckpt"]), str(tiny)]) == 0   # progress on
    captured = capsys.readouterr()
    assert json.loads(captured.out)["written"] == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the features come from other models")
    assert "clip: clip-tiny, not synthetic" in err[0] and "the dimensions match" in err[0]
    assert "movie/s" not in captured.err      # the bar is off when stderr is not a terminal
