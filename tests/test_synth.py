"""The synthetic benchmark generator writes real contract folders with planted, learnable structure."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.features import read_metadata, shot_modalities
from mega_pipe.manifests.schema import read_manifest
from mega_pipe.manifests.synth import (
    TRIPOD_TP_POSITIONS,
    SynthParams,
    generate,
    load_structure,
)
from mega_pipe.model.data import Normalizer, load_entries
from mega_pipe.model.metrics import scene_metrics
from mega_pipe.pipeline.cli import main

MODALITIES = {"clip": 24, "place": 16}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return generate(out, 12, seed=3, modalities=MODALITIES)


def test_folders_follow_the_extract_contract(synth):
    entries = read_manifest(synth)  # checks folders, shot counts and label index ranges
    assert {e.split for e in entries} == {"train", "val", "test"}
    folder = entries[0].features
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["contract"] == 1 and manifest["movie_id"] == entries[0].movie_id
    shots = pq.read_table(folder / "shots.parquet")
    assert shot_modalities(shots.schema) == list(MODALITIES)
    for m, dim in MODALITIES.items():
        assert shots.schema.field(m).type == pa.list_(pa.float32(), dim)
        assert shots.schema.field(f"{m}_count").type == pa.int32()
    assert read_metadata(folder / "shots.parquet")["kind"] == "shots"
    start, end = shots["start_frame"].to_numpy(), shots["end_frame"].to_numpy()
    assert np.all(end > start) and np.all(start[1:] >= end[:-1])
    assert shots["shot_idx"].to_pylist() == list(range(shots.num_rows))
    synopsis = pq.read_table(folder / "synopsis.parquet")
    assert synopsis.column_names == ["sentence_idx", "text", "vector"]
    assert 5 <= synopsis.num_rows


def test_generation_is_deterministic_per_movie(tmp_path, synth):
    # Movie i depends only on (seed, i): a smaller set reproduces the first movies exactly.
    again = read_manifest(generate(tmp_path, 2, seed=3, modalities=MODALITIES))
    first = read_manifest(synth)[:2]
    for a, b in zip(first, again):
        ta, tb = pq.read_table(a.features / "shots.parquet"), pq.read_table(b.features / "shots.parquet")
        assert ta.select(["start_frame", "clip"]).equals(tb.select(["start_frame", "clip"]))
        assert a.tp_shots == b.tp_shots and a.scene_labels == b.scene_labels


def test_planted_turning_points_and_synopsis(synth):
    entries = read_manifest(synth)
    positions = []
    for e in entries:
        n = len(e.scene_labels)
        positions.append([np.mean(g) / n for g in e.tp_shots])
        flat = [s for g in e.tp_shots for s in g]
        assert flat == sorted(flat) and len(set(flat)) == len(flat)  # in story order, disjoint
        assert all(len(g) == 1 for g in e.tp_sentences)
        sentences = [g[0] for g in e.tp_sentences]
        assert sentences == sorted(set(sentences))  # five distinct TP sentences, in order
    assert np.allclose(np.mean(positions, axis=0), TRIPOD_TP_POSITIONS, atol=0.04)


def test_scene_structure_is_learnable_but_not_trivial(synth):
    """Boundaries are visible in the features, yet one adjacent-shot distance is far from enough."""
    entries = read_manifest(synth)
    movies = load_entries(entries, list(MODALITIES))
    norm = Normalizer.fit(movies, list(MODALITIES))
    records, within, across = [], [], []
    for movie in movies:
        x = np.concatenate(list(norm.apply(movie).features.values()), axis=1)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        cos_next = np.append((x[:-1] * x[1:]).sum(axis=1), 1.0)
        labels = movie.scene_labels
        within.extend(cos_next[labels == 0])
        across.extend(cos_next[labels == 1])
        records.append({"movie_id": movie.movie_id, "prob": ((1 - cos_next) / 2).tolist(),
                        "label": [None if y < 0 else int(y) for y in labels],
                        "shot_frames": movie.shot_frames.tolist()})
    assert np.mean(within) > np.mean(across) + 0.1
    ap = scene_metrics(records)["ap"]
    base_rate = np.mean([y for m in movies for y in m.scene_labels if y >= 0])
    assert base_rate + 0.1 < ap < 0.85


def test_real_film_statistics_are_used():
    st = load_structure()
    assert st.shots_per_scene.min() >= 1 and np.median(st.shots_per_scene) == 2
    assert st.shot_durations.min() > 0 and 3 < np.median(st.shot_durations) < 8


def test_cli_and_errors(tmp_path, capsys):
    assert main(["manifest", "synth", str(tmp_path / "cli"), "--movies", "2",
                 "--modalities", "clip:8"]) == 0
    path = capsys.readouterr().out.strip()
    assert len(read_manifest(path)) == 2
    with pytest.raises(MegaPipeError, match="structure annotations"):
        generate(tmp_path / "x", 1, modalities={"clip": 8}, structure_dir=tmp_path / "nowhere")
    with pytest.raises(MegaPipeError, match="at least 1"):
        generate(tmp_path / "y", 0, modalities={"clip": 8})
    with pytest.raises(MegaPipeError, match="no modalities"):
        generate(tmp_path / "y", 1, modalities={})
    assert main(["manifest", "synth", str(tmp_path / "z"), "--modalities", "clip"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mega-pipe: error: --modalities must look like clip:32") and \
        err.count("\n") == 1
    assert not (tmp_path / "z").exists()
    with pytest.raises(MegaPipeError, match="five TP scenes"):
        SynthParams(scenes=(3, 8))


@pytest.mark.parametrize("framing", [0.0, 1.5])
def test_noise_free_scenes_show_the_planted_structure(tmp_path, framing):
    """Without noise a scene's shots share one vector (framing off) or alternate between two
    (shot / reverse shot), TP shots aside."""
    clean = SynthParams(shot_noise=0.0, modality_noise=0.0, framing_strength=framing, scenes=(6, 8))
    entries = read_manifest(generate(tmp_path, 1, seed=0, modalities={"clip": 8}, params=clean))
    (movie,) = load_entries(entries, ["clip"])
    scene = np.cumsum(np.r_[0, movie.scene_labels[:-1]])
    tp = {i for g in entries[0].tp_shots for i in g}
    for s in np.unique(scene):
        plain = [movie.features["clip"][i] for i in np.flatnonzero(scene == s) if i not in tp]
        distinct = np.unique(np.round(np.array(plain), 4), axis=0)
        assert len(distinct) <= (1 if framing == 0.0 else 2)


def test_default_modalities_are_the_tiny_extractors(tmp_path, capsys):
    """A checkpoint trained on the default synthetic set (`mega-pipe manifest synth`) fits movies
    extracted with --models tiny."""
    from mega_pipe.extractors.registry import REGISTRY, VIDEO_MODALITIES
    from mega_pipe.pipeline.cli import build_parser
    from mega_pipe.pipeline.cli.manifest import tiny_modalities

    # what a movie file extracted with --models tiny has (bassl is for key frames only)
    tiny = {e.modality: e.dim for e in REGISTRY.values()
            if e.model_set == "tiny" and e.modality in VIDEO_MODALITIES}
    assert tiny_modalities() == tiny and tiny["place"] == 48
    args = build_parser().parse_args(["manifest", "synth", str(tmp_path)])
    assert args.modalities == ",".join(f"{m}:{d}" for m, d in tiny.items())
    assert main(["manifest", "synth", str(tmp_path), "--movies", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "manifest.jsonl")
    shots = pq.read_schema(read_manifest(tmp_path / "manifest.jsonl")[0].features / "shots.parquet")
    assert {m: shots.field(m).type.list_size for m in shot_modalities(shots)} == tiny
