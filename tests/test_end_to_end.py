"""The whole product on CPU, as a new user runs it: extract a few small movies with the tiny
models, write a manifest, train each task for an epoch, evaluate, and segment a new movie."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from mega_pipe.manifests.schema import MovieEntry, write_manifest
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.demo import SAMPLE_SYNOPSIS, make_movie, write_srt

SHOTS = {
    "m1": [2, 1.5, 2.5, 1.5, 2, 1.5, 2],
    "m2": [1.5, 2, 1.5, 2.5, 1.5, 2, 1.5, 2],
    "m3": [2.5, 1.5, 2, 1.5, 2, 2.5, 1.5],
    "new": [2, 2, 1.5, 2.5, 1.5, 2, 2],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("e2e")
    movies, cuts = {}, {}
    for name, shots in SHOTS.items():
        movie = root / f"{name}.mp4"
        cuts[name] = make_movie(movie, shots, size=(160, 90))
        write_srt(root / f"{name}.srt")                       # picked up as the sidecar
        (root / f"{name}.synopsis.txt").write_text(SAMPLE_SYNOPSIS)
        movies[name] = movie
    out = root / "features"
    for name in ("m1", "m2", "m3"):
        assert main(["extract", str(movies[name]), "--models", "tiny", "--synopsis",
                     str(root / f"{name}.synopsis.txt"), "--out", str(out), "--no-progress"]) == 0
    entries = []
    for split, name in zip(("train", "val", "test"), ("m1", "m2", "m3")):
        n = pq.read_metadata(out / name / "shots.parquet").num_rows
        assert n == len(SHOTS[name])
        labels = [1 if i % 2 == 1 else 0 for i in range(n)]   # every second shot ends a scene
        tp_shots = [[min(n - 1, round(f * (n - 1)))] for f in (0.1, 0.3, 0.5, 0.75, 0.9)]
        entries.append(MovieEntry(name, out / name, split, labels, [[0], [1], [2], [3], [4]], tp_shots))
    manifest = root / "manifest.jsonl"
    write_manifest(manifest, entries)
    return {"root": root, "movies": movies, "cuts": cuts, "features": out, "manifest": manifest}


def test_train_eval_segment(world, capsys):
    root, manifest = world["root"], world["manifest"]
    runs = {}
    for task in ("scene", "act"):
        run = root / f"run_{task}"
        assert main(["train", "--task", task, "--manifest", str(manifest), "--out", str(run),
                     "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
        assert (run / "best.pt").exists() and (run / "last.pt").exists()
        lines = (run / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1]   # nothing untrained is a candidate
        capsys.readouterr()
        assert main(["eval", "--checkpoint", str(run / "best.pt"), "--manifest", str(manifest),
                     "--split", "test", "--device", "cpu"]) == 0
        metrics = json.loads(capsys.readouterr().out)["metrics"]
        keys = ("ap", "f1", "recall", "recall_at_3s", "miou") if task == "scene" else ("ta", "pa", "d")
        for k in keys:
            assert 0.0 <= metrics[k] <= 1.0, (k, metrics)
        runs[task] = run / "best.pt"

    out = root / "boundaries.json"
    assert main(["segment", str(world["movies"]["new"]), "--out", str(out), "--models", "tiny",
                 "--scene-checkpoint", str(runs["scene"]), "--act-checkpoint", str(runs["act"]),
                 "--synopsis", str(root / "new.synopsis.txt"), "--features", str(world["features"]),
                 "--device", "cpu", "--no-progress"]) == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == "mega-pipe/boundaries" and doc["version"] == 3
    assert doc["methods"]["scenes"]["name"] == doc["methods"]["acts"]["name"] == "checkpoint"
    assert doc["movie"]["frame_rate"] == "25/1" and doc["missing"] == []
    n = len(doc["shots"])
    assert n == len(SHOTS["new"]) and doc["shots"][0]["start_s"] == 0.0
    assert len(doc["scene_boundary_prob"]) == n
    assert all(0.0 <= p <= 1.0 for p in doc["scene_boundary_prob"])
    scenes = doc["scenes"]
    assert scenes[0]["first_shot"] == 0 and scenes[-1]["last_shot"] == n - 1
    assert all(a["last_shot"] + 1 == b["first_shot"] for a, b in zip(scenes, scenes[1:]))
    tps = [t["shot"] for t in doc["turning_points"]]
    assert len(tps) == 5 and tps == sorted(tps) and len(set(tps)) == 5
    assert [a["name"] for a in doc["acts"]][0] == "Setup" and len(doc["acts"]) == 6
    assert all(abs(sum(row) - 1) < 1e-3 for row in doc["tp_posteriors"])
    assert doc["provenance"]["scene_checkpoint"].endswith("best.pt")



def test_segment_with_a_synopsis_guided_variant_records_whether_the_synopsis_guided(world, tmp_path, capsys):
    """act-sync (synopsis_guidance): with the movie's synopsis the act method says it was guided;
    without one the turning points come from the shot model alone, and `missing` says so."""
    run = tmp_path / "run_act_sync"
    assert main(["train", "--task", "act", "--config", "act-sync", "--manifest", str(world["manifest"]),
                 "--out", str(run), "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
    base = ["segment", str(world["movies"]["new"]), "--models", "tiny", "--act-checkpoint", str(run / "best.pt"),
            "--device", "cpu", "--no-progress"]
    docs = {}
    for guided, extra in ((True, ["--synopsis", str(world["root"] / "new.synopsis.txt")]), (False, [])):
        out = tmp_path / f"guided-{guided}.json"
        features = tmp_path / f"features-{guided}"     # the synopsis is an extract input: own folder
        assert main([*base, "--features", str(features), "--out", str(out), *extra]) == 0
        docs[guided] = json.loads(out.read_text())
        assert docs[guided]["methods"]["acts"]["synopsis_guided"] is guided
        assert "synopsis_guidance" in docs[guided]["methods"]["acts"]["model"]["additions"]
    assert docs[True]["missing"] == []
    assert [m for m in docs[False]["missing"] if m.startswith("synopsis: none")]
    assert docs[True]["tp_posteriors"] != docs[False]["tp_posteriors"]

def test_segment_without_checkpoints_uses_the_unsupervised_methods(world, tmp_path, capsys):
    """No checkpoint: scenes from shot coherence, TPs from TRIPOD's prior (docs/unsupervised.md),
    every boundary on a real cut of the generated movie, the methods recorded (v2)."""
    cut_frames = {0, *world["cuts"]["new"]}
    base = ["segment", str(world["movies"]["new"]), "--models", "tiny",
            "--features", str(world["features"]), "--no-progress"]
    for extra in ([], ["--scenes", "5"]):
        out = tmp_path / f"b{len(extra)}.json"
        assert main([*base, "--out", str(out), *extra]) == 0
        doc = json.loads(out.read_text())
        assert doc["version"] == 3 and doc["missing"] == []
        assert {s["start_frame"] for s in doc["shots"]} == cut_frames    # shots are the cuts
        firsts = [s["first_shot"] for s in doc["scenes"]]
        assert firsts[0] == 0 and doc["scenes"][-1]["last_shot"] == len(doc["shots"]) - 1
        assert {doc["shots"][i]["start_frame"] for i in firsts} <= cut_frames
        assert all(0 <= s["confidence"] <= 1 for s in doc["scenes"])
        tps = [t["shot"] for t in doc["turning_points"]]
        assert len(tps) == 5 and tps == sorted(tps) and len(set(tps)) == 5
        assert len(doc["acts"]) == 6 and doc["acts"][0]["first_shot"] == 0
        assert {doc["shots"][t]["start_frame"] for t in tps} <= cut_frames
        methods = doc["methods"]
        assert methods["scenes"]["name"] == "shot-coherence"
        assert methods["acts"]["name"] == "tripod-prior"
        assert doc["provenance"]["scene_checkpoint"] is None
    assert len(doc["scenes"]) == 5 and methods["scenes"]["scenes"] == 5      # --scenes 5
    assert doc["scene_threshold"] is None and methods["acts"]["snapped_to_scenes"]
    assert set(tps) == set(firsts)             # five scenes: every TP opens one of them


def test_synthetic_checkpoint_segments_a_tiny_extracted_movie(tmp_path, capsys):
    """README's newcomer path: train on the default synthetic set, segment a real movie extracted
    with --models tiny. testvideo.mp4 has no audio and no subtitles: predicted without them."""
    from conftest import TESTVIDEO, need
    from mega_pipe.manifests.synth import SynthParams, generate
    from mega_pipe.pipeline.cli.manifest import tiny_modalities

    manifest = generate(tmp_path / "synth", 4, modalities=tiny_modalities(),
                        params=SynthParams(scenes=(8, 10), sentences=(6, 8)))
    run = tmp_path / "scene"
    assert main(["train", "--task", "scene", "--config", "scene-small", "--manifest", str(manifest),
                 "--out", str(run), "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
    out = tmp_path / "boundaries.json"
    args = ["segment", str(need(TESTVIDEO)), "--out", str(out), "--models", "tiny",
            "--scene-checkpoint", str(run / "best.pt"), "--features", str(tmp_path / "features"),
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert len(doc["scene_boundary_prob"]) == len(doc["shots"]) > 1
    assert "audio: movie has no audio stream; predicted without it" in doc["missing"]
    assert "subtitle: movie has no subtitles; predicted without it" in doc["missing"]

    # A checkpoint of other dimensions: the error says which synthetic set fits the movie.
    other = generate(tmp_path / "other", 2, modalities={"clip": 8, "place": 8},
                     params=SynthParams(scenes=(8, 10), sentences=(6, 8)))
    assert main(["train", "--task", "scene", "--config", "scene-small", "--manifest", str(other),
                 "--out", str(tmp_path / "other_run"), "--epochs", "1", "--device", "cpu",
                 "--no-progress"]) == 0
    capsys.readouterr()
    args[args.index("--scene-checkpoint") + 1] = str(tmp_path / "other_run" / "best.pt")
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "expects clip:8,place:8 but the movie's features are clip:32,place:48" in err
    assert "mega-pipe manifest synth OUT --modalities clip:32,place:48`" in err
