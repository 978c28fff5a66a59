"""The MovieNet-318 path (docs/reproduce.md) on a MovieNet-shaped fixture: key frames in
BaSSL's layout, MovieNet's shot, label and split files, synthetic images. Extraction from key
frames (pipeline/keyframes.py), then the recipe end to end through the command line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mega_pipe.manifests.features import FeatureFolder
from mega_pipe.pipeline.cli import main
from PIL import Image

FPS = 24
# per movie: scene lengths in shots (12 shots each); the boundary after the last shot of a scene
MOVIES = {"tt0000001": (3, 4, 2, 3), "tt0000002": (4, 2, 3, 3), "tt0000003": (2, 3, 4, 3)}
SPLIT = {"train": ["tt0000001"], "val": ["tt0000002"], "test": ["tt0000003"],
         "all": list(MOVIES)}
TINY = ["--models", "tiny", "--no-progress"]


def make_movienet(root: Path) -> Path:
    """ROOT/240P_frames/<imdb>/shot_XXXX_img_{0,1,2}.jpg and ROOT/scene318/{shot_movie318,
    label318, meta/split318.json}, as BaSSL's README lays MovieNet out. Each scene has its own
    colour (plus noise), so scenes are visually distinct."""
    rng = np.random.default_rng(0)
    anno = root / "scene318"
    for d in ("shot_movie318", "label318", "meta"):
        (anno / d).mkdir(parents=True, exist_ok=True)
    for imdb, scenes in MOVIES.items():
        frames = root / "240P_frames" / imdb
        frames.mkdir(parents=True)
        shot_lines, label_lines, frame, shot = [], [], 0, 0
        for s, n in enumerate(scenes):
            colour = rng.integers(30, 226, 3)
            for j in range(n):
                length = int(rng.integers(30, 120))
                start, end = frame, frame + length - 1
                kfs = [start + length // 6, start + length // 2, end - length // 6]
                shot_lines.append(" ".join(map(str, [start, end, *kfs])))
                if shot < sum(scenes) - 1:      # MovieNet has no label for the last shot
                    last = j == n - 1
                    label = (-1 if s == 1 else 1) if last else 0
                    label_lines.append(f"{shot:04d} {label}")
                for k in range(3):
                    noise = rng.normal(0, 12, (120, 200, 3))
                    img = np.clip(colour + noise, 0, 255).astype(np.uint8)
                    Image.fromarray(img).save(frames / f"shot_{shot:04d}_img_{k}.jpg", quality=85)
                frame, shot = end + 1, shot + 1
        (anno / "shot_movie318" / f"{imdb}.txt").write_text("\n".join(shot_lines) + "\n")
        (anno / "label318" / f"{imdb}.txt").write_text("\n".join(label_lines) + "\n")
    (anno / "meta" / "split318.json").write_text(json.dumps(SPLIT))
    return root


@pytest.fixture(scope="module")
def movienet(tmp_path_factory) -> Path:
    return make_movienet(tmp_path_factory.mktemp("movienet"))


@pytest.fixture(scope="module")
def extracted(movienet: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("feats")
    assert main(["extract", "--movienet", str(movienet), "--out", str(out), *TINY]) == 0
    return out


def test_key_frames_give_the_contract(movienet: Path, extracted: Path) -> None:
    imdb = "tt0000001"
    folder = FeatureFolder(extracted / imdb).require_complete()
    assert folder.modalities() == ["bassl", "place", "clip"]      # the scene set-up's default
    times = folder.read_shot_times()
    rows = np.loadtxt(movienet / "scene318/shot_movie318" / f"{imdb}.txt", dtype=np.int64)
    np.testing.assert_array_equal(times["start_frame"], rows[:, 0])
    np.testing.assert_array_equal(times["end_frame"], rows[:, 1] + 1)           # exclusive
    np.testing.assert_allclose(times["start_s"], rows[:, 0] / FPS)
    np.testing.assert_allclose(times["end_s"], (rows[:, 1] + 1) / FPS)
    shots = folder.read_shots()
    for m, dim in (("bassl", 56), ("place", 48), ("clip", 32)):
        samples = folder.read_samples(m)
        np.testing.assert_allclose(samples["t_start"], rows[:, 2:].reshape(-1) / FPS)
        np.testing.assert_allclose(samples["t_end"], (rows[:, 2:].reshape(-1) + 1) / FPS)
        assert samples["vectors"].shape == (3 * len(rows), dim)
        assert shots[f"{m}_count"].to_pylist() == [3] * len(rows)
        pooled = np.asarray(shots[m].to_pylist(), np.float32)
        np.testing.assert_allclose(pooled, samples["vectors"].reshape(len(rows), 3, dim).mean(1),
                                   rtol=1e-5, atol=1e-6)
    manifest = folder.read_manifest()
    assert manifest["source_kind"] == "movienet-keyframes"
    assert manifest["source"]["keyframes"] == str((movienet / "240P_frames" / imdb).resolve())
    assert manifest["source"]["shot_file"].endswith(f"shot_movie318/{imdb}.txt")
    assert manifest["models"]["bassl"]["model_id"] == "bassl-tiny"


def test_rerun_reuses_and_absent_modalities(movienet: Path, extracted: Path, tmp_path: Path,
                                            capsys) -> None:
    capsys.readouterr()
    assert main(["extract", "--movienet", str(movienet), "tt0000002", "--out", str(extracted),
                 *TINY]) == 0
    assert "[cached]" in capsys.readouterr().out
    # one movie, by folder and shot file; modalities without key-frame input are absent
    out = tmp_path / "one"
    assert main(["extract", "--keyframes", str(movienet / "240P_frames" / "tt0000002"),
                 "--shot-file", str(movienet / "scene318/shot_movie318/tt0000002.txt"),
                 "--modalities", "place,audio,subtitle", "--out", str(out), *TINY]) == 0
    folder = FeatureFolder(out / "tt0000002")
    assert folder.modalities() == ["place"]
    assert set(folder.absent_modalities()) == {"audio", "subtitle"}
    shots = folder.read_shots()
    assert shots["audio"].null_count == len(shots) and set(shots["audio_count"].to_pylist()) == {0}


def test_bad_key_frame_input_is_one_line(movienet: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("0 10 5 6 50\n")
    assert main(["extract", "--keyframes", str(movienet / "240P_frames" / "tt0000001"),
                 "--shot-file", str(bad), "--out", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "lie outside" in err and not (tmp_path / "o" / "bad").exists()
    assert main(["extract", "--movienet", str(tmp_path), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "240P_frames" in capsys.readouterr().err


def test_movienet_recipe_end_to_end(movienet: Path, extracted: Path, tmp_path: Path,
                                    capsys) -> None:
    """docs/reproduce.md with --models tiny: extract -> manifest-movienet -> train -> eval."""
    anno = movienet / "scene318"
    manifest = tmp_path / "movienet318.jsonl"
    assert main(["manifest-movienet", "--labels", str(anno / "label318"),
                 "--shots", str(anno / "shot_movie318"),
                 "--split-file", str(anno / "meta" / "split318.json"),
                 "--features", str(extracted), "--manifest", str(manifest)]) == 0
    assert "labels copied by index" in capsys.readouterr().out
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {e["split"] for e in lines} == {"train", "val", "test"}
    run = tmp_path / "run"
    assert main(["train", "--task", "scene", "--config", "scene-small", "--manifest",
                 str(manifest), "--out", str(run), "--epochs", "2", "--device", "cpu",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run / "best.pt"), "--manifest", str(manifest),
                 "--split", "test", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_movies"] == 1 and result["metrics"]["n_shots"] == 11   # last shot: no label
    assert 0.0 <= result["metrics"]["ap"] <= 1.0
