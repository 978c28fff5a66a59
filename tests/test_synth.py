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


# --- variant "relational": nothing recurs across movies (docs/training.md) --------------------


def _scene_means(entry, modality="clip"):
    x = load_entries([entry], [modality])[0].features[modality].astype(np.float64)
    labels = np.array([0 if v is None else v for v in entry.scene_labels])
    scene = np.r_[0, np.cumsum(labels[:-1])]
    return x, scene, np.stack([x[scene == s].mean(axis=0) for s in range(scene.max() + 1)])


def _max_cross_movie_cosine(manifest):
    entries = read_manifest(manifest)[:4]
    means = []
    for e in entries:
        _, _, m = _scene_means(e)
        m = m - m.mean(axis=0)            # remove the movie's offset
        means.append(m / np.linalg.norm(m, axis=1, keepdims=True))
    return np.mean([np.max(means[a] @ means[b].T, axis=1).mean()
                    for a in range(len(means)) for b in range(len(means)) if a != b])


def test_relational_variant_shares_no_content_across_movies(tmp_path):
    params = SynthParams(modality_noise=0.05, shot_noise=0.05)   # see the latents through the features
    kw = dict(seed=4, modalities={"clip": 48}, params=params)
    shared = _max_cross_movie_cosine(generate(tmp_path / "d", 4, **kw))
    fresh = _max_cross_movie_cosine(generate(tmp_path / "r", 4, variant="relational", **kw))
    # Default: every scene's setting recurs in the other movies (best match ~ the same setting);
    # relational: the best match of a scene in another movie is only the chance maximum.
    assert shared > 0.75 and fresh < 0.65 and shared - fresh > 0.15, (shared, fresh)
    meta = json.loads((read_manifest(tmp_path / "r" / "manifest.jsonl")[0].features / "manifest.json").read_text())
    assert meta["config"]["variant"] == "relational"


def test_relational_scene_latents_are_fresh_draws():
    from mega_pipe.manifests.synth import _relational_content
    p = SynthParams(variant="relational")
    scene_of_shot = np.repeat(np.arange(60), 3)
    za, _ = _relational_content(np.random.default_rng(1), 60, scene_of_shot, p)
    zb, _ = _relational_content(np.random.default_rng(2), 60, scene_of_shot, p)
    unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)  # noqa: E731
    cross = (unit(za) @ unit(zb).T).max(axis=1).mean()
    within = (unit(za) @ unit(za).T - 2 * np.eye(60)).max(axis=1).mean()
    assert abs(cross - within) < 0.1   # another movie's scenes are no closer than this movie's other scenes


def test_relational_setups_alternate_inside_a_scene():
    from mega_pipe.manifests.synth import _relational_content
    p = SynthParams(variant="relational")
    scene_of_shot = np.repeat(np.arange(200), 6)
    _, look = _relational_content(np.random.default_rng(0), 200, scene_of_shot, p)
    for s in range(200):
        rows = look[scene_of_shot == s]
        distinct = np.unique(rows.round(6), axis=0)
        assert 1 <= len(distinct) <= 3
        k = len(distinct)
        np.testing.assert_allclose(rows[k:], rows[:-k])          # cycled: shot j uses set-up j mod k
    counts = [len(np.unique(look[scene_of_shot == s].round(6), axis=0)) for s in range(200)]
    assert set(counts) == {1, 2, 3}


def test_relational_same_setup_shots_are_similar(tmp_path):
    manifest = generate(tmp_path, 3, seed=5, modalities={"clip": 48}, variant="relational")
    for entry in read_manifest(manifest):
        x, scene, _ = _scene_means(entry)
        u = x - x.mean(axis=0)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        sim = u @ u.T
        same = scene[:, None] == scene[None, :]
        near = np.abs(np.arange(len(x))[:, None] - np.arange(len(x))[None, :]) <= 4
        off = ~np.eye(len(x), dtype=bool)
        # the best within-scene partner beats the best other-scene partner nearby, on average
        best_in = np.where(same & off, sim, -2).max(axis=1)
        best_out = np.where(~same & near, sim, -2).max(axis=1)
        ok = (best_in > -2) & (best_out > -2)
        assert (best_in[ok] > best_out[ok]).mean() > 0.7


def test_unknown_variant_is_a_user_error(tmp_path):
    with pytest.raises(MegaPipeError, match="variant"):
        generate(tmp_path, 1, modalities={"clip": 4}, variant="shuffled")


def test_cli_synth_variant(tmp_path):
    assert main(["manifest", "synth", str(tmp_path / "s"), "--movies", "2", "--variant", "relational",
                 "--modalities", "clip:8"]) == 0
    meta = json.loads((tmp_path / "s" / "synth0000" / "manifest.json").read_text())
    assert meta["config"]["variant"] == "relational"


def _shared_direction(manifest, which: str) -> float:
    """How much the gold shots of each TP (``which`` = "tp") — or as many shots at the same
    place shifted into the middle of an act (``which`` = "control") — share one direction
    across movies: the norm of their average centred feature, averaged over the 5 TPs."""
    rows = []
    for movie in load_entries(read_manifest(manifest), list(MODALITIES)):
        x = np.concatenate([movie.features[m] for m in MODALITIES], axis=1)
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        n = len(x)
        shift = 0 if which == "tp" else n // 12
        rows.append([x[[min(i + shift, n - 1) for i in g]].mean(0) for g in movie.tp_shots])
    return float(np.linalg.norm(np.asarray(rows).mean(0), axis=1).mean())


def _change_gains(manifest) -> np.ndarray:
    """Per gold TP: how much more the mean feature of the 12 shots after its first shot differs
    from the 12 before it than at a random shot inside an act does (seeded)."""
    gains = []
    for movie in load_entries(read_manifest(manifest), list(MODALITIES)):
        x = np.concatenate([movie.features[m] for m in MODALITIES], axis=1)

        def change(k):
            return np.linalg.norm(x[k:k + 12].mean(0) - x[max(0, k - 12):k].mean(0))
        for g in movie.tp_shots:
            j = np.random.default_rng(g[0]).integers(12, len(x) - 12)    # a shot inside an act
            gains.append(change(g[0]) - change(j))
    return np.asarray(gains)


def test_context_variant_marks_turning_points_by_a_change_not_a_direction(tmp_path):
    """Default set: TP shots share a direction across movies (far more than other shots do).
    Context set: no more than other shots, but the situation shared by the shots after a TP
    differs from the one before it, so a before/after comparison finds the TP."""
    default = generate(tmp_path / "d", 30, seed=4, modalities=MODALITIES)
    context_manifest = generate(tmp_path / "c", 30, seed=4, modalities=MODALITIES,
                                variant="context")
    assert _shared_direction(default, "tp") > 1.5 * _shared_direction(default, "control")
    assert _shared_direction(context_manifest, "tp") < 1.2 * _shared_direction(context_manifest,
                                                                                 "control")
    gains = _change_gains(context_manifest)
    assert np.mean(gains) > 0 and np.mean(gains > 0) > 0.58   # seeded: 0.61


def test_alignment_variant_marks_turning_points_only_in_the_synopsis(tmp_path):
    """Alignment set: TP shots share no direction across movies and open no new context (no
    bigger before/after change than a shot inside an act, unlike the context set's TPs): only
    the synopsis marks them."""
    manifest = generate(tmp_path / "a", 30, seed=4, modalities=MODALITIES, variant="alignment")
    assert _shared_direction(manifest, "tp") < 1.2 * _shared_direction(manifest, "control")
    assert abs(np.mean(_change_gains(manifest) > 0) - 0.5) < 0.1       # no change point (seeded: 0.50)
    meta = json.loads((tmp_path / "a" / "synth0000" / "manifest.json").read_text())
    assert meta["config"]["variant"] == "alignment"


def test_crossmodal_variant_marks_turning_points_by_one_modality_against_the_others(tmp_path):
    """Crossmodal set: no shared TP direction, no change point; but predicting the last
    modality from the others (least squares over all movies) fails far more at TP shots."""
    manifest = generate(tmp_path / "x", 30, seed=4, modalities=MODALITIES, variant="crossmodal")
    assert _shared_direction(manifest, "tp") < 1.2 * _shared_direction(manifest, "control")
    assert abs(np.mean(_change_gains(manifest) > 0) - 0.5) < 0.1
    odd = sorted(MODALITIES)[-1]
    xs, ys, tp = [], [], []
    for movie in load_entries(read_manifest(manifest), list(MODALITIES)):
        z = {m: (v - v.mean(0)) / (v.std(0) + 1e-6) for m, v in movie.features.items()}
        xs.append(np.concatenate([z[m] for m in sorted(MODALITIES) if m != odd], axis=1))
        ys.append(z[odd])
        mark = np.zeros(len(z[odd]), bool)
        mark[[i for g in movie.tp_shots for i in g]] = True
        tp.append(mark)
    x, y, tp = np.concatenate(xs), np.concatenate(ys), np.concatenate(tp)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = np.linalg.norm(y - x @ w, axis=1)
    assert residual[tp].mean() > 1.2 * residual[~tp].mean()   # seeded: 1.31 (alignment set: 1.00)


def test_tripod_setting_labels_only_the_training_synopses(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["manifest", "synth", str(out), "--movies", "10", "--variant", "context",
                 "--tripod-setting"]) == 0
    entries = read_manifest(out / "manifest.jsonl")
    assert {e.split for e in entries} == {"train", "val", "test"}
    for e in entries:
        assert e.tp_sentences is not None
        assert (e.tp_shots is None) == (e.split == "train")
