"""Catalogue runs (docs/scale-out.md), locally and on a real Ray cluster: a head and a worker
node, each a set of real Ray processes on 127.0.0.1 (``ray.cluster_utils.Cluster``), one CPU
each; the ``mega-pipe`` driver runs as a separate process, as a user's would.

The catalogue: a real PySceneDetect test video, FFmpeg-generated movies (one long enough to be
killed in the middle), and a corrupt file. The reference is a single-process run of the same
movies; a Ray run must give byte-identical Parquet."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mega_pipe.pipeline.demo import make_movie
from mega_pipe.pipeline.inputs import ExtractConfig, read_catalogue

from conftest import TESTVIDEO, need

TINY = ["--models", "tiny", "--no-progress", "--modalities", "clip,place,audio"]
GOOD = ["short", "long", "testvideo"]


def mega_pipe(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mega_pipe.pipeline.cli", *argv],
                          capture_output=True, text=True, timeout=300, **kw)


def start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mega_pipe.pipeline.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def parquet_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))
            if "_catalogue" not in p.parts}


def summary(out: Path) -> dict[str, dict]:
    [path] = sorted((out / "_catalogue").glob("*.parquet"))[-1:]
    return {r["movie_id"]: r for r in pq.read_table(path).to_pylist()}


def wait_for(cond, what: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``cond``; on timeout fail, saying whether ``proc`` (the command being watched) had
    already ended and what it wrote to stderr, so that a failure names its cause."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            ended = proc is not None and proc.poll() is not None
            detail = f"; the command exited {proc.returncode}: {proc.stderr.read()[-2000:]}" if ended else ""
            raise AssertionError(f"timed out waiting for {what}{detail}")
        time.sleep(0.1)


def ffmpeg_children(path: Path) -> list[str]:
    """Command lines of running processes that read ``path`` (left-over FFmpeg decoders)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "ffmpeg" in cmd and str(path) in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("catalogue")
    movies = root / "movies"
    movies.mkdir()
    make_movie(movies / "short.mp4", [2, 2], size=(160, 90))
    make_movie(movies / "long.mp4", [8, 8, 8, 8, 8], size=(320, 180))
    (movies / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    listing = root / "movies.csv"
    listing.write_text("video,id\nmovies/short.mp4,short\nmovies/long.mp4,long\n"
                       f"{need(TESTVIDEO)},testvideo\nmovies/broken.mp4,broken\n")
    ref = root / "reference"
    r = mega_pipe("extract", *(str(movies / f"{m}.mp4") for m in ("short", "long")),
                  str(TESTVIDEO), "--out", str(ref), *TINY)
    assert r.returncode == 0, r.stderr
    return {"root": root, "movies": movies, "list": listing, "reference": ref}


@pytest.fixture(scope="module")
def ray_address():
    """A real two-node Ray cluster on loopback (head + one worker node, 1 CPU each)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # keep Ray on 127.0.0.1
    os.environ["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80_000_000}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    yield cluster.address
    cluster.shutdown()


def assert_like_reference(out: Path, reference: Path, movies=GOOD) -> None:
    for m in movies:
        got, want = parquet_files(out / m), parquet_files(reference / m)
        assert got.keys() == want.keys() and got == want, m
    assert not list(out.glob(".*.partial")) and not list(out.glob(".*.lock"))


# --- Inputs --------------------------------------------------------------------------------------


def test_catalogue_inputs_files_folders_globs_and_lists(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.MKV", "a/notes.txt", "z.mov"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a" / ".hidden.partial").mkdir()
    (tmp_path / "a" / ".hidden.partial" / "w.mp4").write_bytes(b"")
    jl = tmp_path / "list.jsonl"
    jl.write_text(json.dumps({"video": "a/x.mp4", "id": "ex", "subtitles": "x.srt",
                              "audio_track": "fra", "synopsis_lines": True}) + "\n")
    got = read_catalogue([tmp_path / "a", str(tmp_path / "*.mov"), jl, tmp_path / "gone.mp4"])
    assert [Path(m.video).name for m in got] == ["x.mp4", "y.MKV", "z.mov", "x.mp4", "gone.mp4"]
    row = got[3]
    assert (row.movie_id, row.subtitles, row.audio_track, row.synopsis_lines) == (
        "ex", tmp_path / "x.srt", "fra", True)
    assert row.config(ExtractConfig(audio_track="eng")).audio_track == "fra"


@pytest.mark.parametrize("text,message", [
    ("video,idd\nx.mp4,a\n", "unknown column 'idd'"),
    ("id\nfoo\n", "no 'video'"),
    ("video,id\na.mp4,same\nb.mp4,same\n", "2 inputs would share the output folder 'same'"),
    ("video,id\na.mp4,_x\n", "movie id '_x' cannot name a folder"),
])
def test_bad_catalogue_list_is_one_line_and_nothing_written(tmp_path, text, message):
    listing = tmp_path / "l.csv"
    listing.write_text(text)
    r = mega_pipe("extract", str(listing), "--out", str(tmp_path / "out"), *TINY)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and message in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


# --- In this process -----------------------------------------------------------------------------


def test_local_catalogue_isolates_the_bad_movie_and_reruns_do_nothing(catalogue, tmp_path):
    out = tmp_path / "out"
    r = mega_pipe("extract", str(catalogue["list"]), "--out", str(out), *TINY)
    assert r.returncode == 1
    errors = [x for x in r.stderr.splitlines() if x.startswith("mega-pipe: error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0], r.stderr
    rows = summary(out)
    assert {m: rows[m]["status"] for m in rows} == {**dict.fromkeys(GOOD, "done"),
                                                    "broken": "failed"}
    assert rows["broken"]["error"] in errors[0] and rows["broken"]["attempts"] == 1
    assert rows["long"]["frames"] == 1000 and rows["long"]["output"] == str(out / "long")
    assert_like_reference(out, catalogue["reference"])
    again = mega_pipe("extract", str(catalogue["list"]), "--out", str(out), *TINY)
    assert again.returncode == 1
    rows = summary(out)
    assert [rows[m]["status"] for m in GOOD] == ["cached"] * 3


def test_two_runs_on_one_output_at_once_do_not_collide(catalogue, tmp_path):
    out = tmp_path / "out"
    argv = ["extract", *(str(catalogue["movies"] / f"{m}.mp4") for m in ("long", "short")),
            "--out", str(out), *TINY]
    runs = [start(*argv), start(*argv)]
    for p in runs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read()
    tables = [pq.read_table(f).to_pylist() for f in sorted((out / "_catalogue").glob("*"))]
    assert len(tables) == 2                       # one summary per run, neither overwritten
    for m in ("long", "short"):                   # each movie computed once, then reused
        assert sorted(next(r["status"] for r in t if r["movie_id"] == m) for t in tables) == [
            "cached", "done"]
    assert_like_reference(out, catalogue["reference"], ["long", "short"])


# --- On a Ray cluster ----------------------------------------------------------------------------


def test_ray_catalogue_equals_single_process_and_isolates_the_bad_movie(catalogue, ray_address,
                                                                       tmp_path):
    out = tmp_path / "out"
    r = mega_pipe("extract", str(catalogue["list"]), "--out", str(out), "--ray", ray_address,
                  *TINY)
    assert r.returncode == 1, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("mega-pipe: error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0], r.stderr
    rows = summary(out)
    assert [rows[m]["status"] for m in GOOD] == ["done"] * 3 and rows["broken"]["status"] == \
        "failed"
    assert len({rows[m]["worker"] for m in GOOD}) >= 1
    assert_like_reference(out, catalogue["reference"])
    # segment over the same catalogue on Ray: the features are reused, one boundaries file each
    seg = tmp_path / "boundaries"
    args = [str(catalogue["movies"] / "short.mp4"), str(TESTVIDEO), "--out", str(seg),
            "--features", str(out), *TINY]
    r = mega_pipe("segment", *args, "--ray", ray_address)
    assert r.returncode == 0, r.stderr
    rows = summary(seg)
    assert [rows[m]["status"] for m in ("short", "testvideo")] == ["done", "done"]
    doc = json.loads((seg / "testvideo.json").read_text())
    assert doc["movie"]["id"] == "testvideo" and len(doc["shots"]) == 5
    assert doc["provenance"]["features"] == str(out / "testvideo")
    r = mega_pipe("segment", *args)               # again, in this process: nothing to redo
    assert r.returncode == 0, r.stderr
    assert [summary(seg)[m]["status"] for m in ("short", "testvideo")] == ["cached", "cached"]


def test_a_worker_killed_mid_movie_is_retried_and_leaves_nothing(catalogue, ray_address,
                                                                tmp_path):
    out = tmp_path / "out"
    long_movie = catalogue["movies"] / "long.mp4"
    driver = start("extract", str(long_movie), str(catalogue["movies"] / "short.mp4"),
                   "--out", str(out), "--ray", ray_address, *TINY)
    lock, partial = out / ".long.lock", out / ".long.partial"
    wait_for(lambda: partial.is_dir() and lock.is_file() and lock.read_text().strip(),
             "the long movie to start", proc=driver)
    time.sleep(1.0)                                # decoding / model start-up under way
    worker = int(lock.read_text())
    assert worker != driver.pid
    os.kill(worker, signal.SIGKILL)
    driver.wait(timeout=300)
    err = driver.stderr.read()
    assert driver.returncode == 0, err
    assert "long.mp4: the worker running it was lost" in err
    rows = summary(out)
    assert rows["long"]["status"] == "done" and rows["long"]["attempts"] == 2, err
    assert_like_reference(out, catalogue["reference"], ["long", "short"])
    assert not ffmpeg_children(long_movie)


def test_killing_the_driver_then_rerunning_finishes_only_what_was_missing(catalogue, ray_address,
                                                                         tmp_path):
    out = tmp_path / "out"
    argv = ["extract", str(catalogue["movies"] / "short.mp4"), str(catalogue["movies"] /
            "long.mp4"), str(TESTVIDEO), "--out", str(out), "--ray", ray_address, *TINY]
    driver = start(*argv)
    wait_for(lambda: (out / "short" / "manifest.json").is_file() and (
        out / ".long.partial").is_dir(), "one movie done and one under way", proc=driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert not (out / "long" / "manifest.json").exists()
    r = mega_pipe(*argv)
    assert r.returncode == 0, r.stderr
    rows = summary(out)
    assert rows["short"]["status"] == "cached"
    assert rows["long"]["status"] == "done"
    assert rows["testvideo"]["status"] in ("done", "cached")
    assert_like_reference(out, catalogue["reference"])
    assert not ffmpeg_children(catalogue["movies"] / "long.mp4")


# --- Training on Ray -----------------------------------------------------------------------------


def ray_train_workers() -> list[int]:
    """PIDs of Ray Train's worker processes (their process title names the actor class)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if b"RayTrainWorker" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return pids


def held_out_ap(run: Path, manifest: Path) -> float:
    r = mega_pipe("eval", "--checkpoint", str(run / "best.pt"), "--manifest", str(manifest),
                  "--split", "test", "--out", str(run / "eval"), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["metrics"]["ap"]


def test_train_on_ray_matches_one_process_survives_a_lost_worker_and_checkpoints_cross(
        ray_address, tmp_path):
    from mega_pipe.manifests.schema import read_manifest
    from mega_pipe.manifests.synth import SynthParams, generate
    from mega_pipe.model.config import config_to_dict, load_config

    manifest = generate(tmp_path / "synth", 30, seed=3, modalities={"clip": 16, "place": 12},
                        params=SynthParams(scenes=(12, 18), sentences=(10, 14)))
    cfg = tmp_path / "scene-tiny.json"
    cfg.write_text(json.dumps({**config_to_dict(load_config("scene-small")), "width": 32,
                               "ffn_width": 64, "n_heads": 4, "n_unimodal": 1}))
    common = ["train", "--task", "scene", "--config", str(cfg), "--manifest", str(manifest),
              "--epochs", "10", "--batch-size", "64", "--lr", "1e-3", "--device", "cpu"]
    one = tmp_path / "one"
    r = mega_pipe(*common, "--out", str(one), "--no-progress")
    assert r.returncode == 0, r.stderr
    two = tmp_path / "two"
    driver = start(*common, "--out", str(two), "--ray", ray_address, "--workers", "2")
    wait_for(lambda: (two / "metrics.jsonl").is_file(), "the first epoch on Ray", 240, proc=driver)
    workers = ray_train_workers()
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)         # one rank lost mid-run: the group restarts
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    summary_two = json.loads(out)
    assert summary_two["workers"] == 2 and summary_two["epochs"] == 10
    epochs = [json.loads(x)["epoch"] for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 11))          # resumed from last.pt: no epoch lost or doubled
    ap_one, ap_two = held_out_ap(one, manifest), held_out_ap(two, manifest)
    labels = [y for e in read_manifest(manifest) if e.split == "test" for y in e.scene_labels
              if y is not None]
    chance = sum(labels) / len(labels)           # the AP of a random ranking
    # Both learned (10 epochs of a 32-wide model: well above chance, far from done) and the
    # data-parallel run lands where the single process does.
    assert ap_one > 1.3 * chance and ap_two > 1.3 * chance, (ap_one, ap_two, chance)
    assert abs(ap_one - ap_two) < 0.25 * ap_one, (ap_one, ap_two)
    # the Ray run's checkpoint resumes in one process (and was just evaluated by one)
    r = mega_pipe("train", "--task", "scene", "--manifest", str(manifest), "--out", str(two),
                  "--resume", "--epochs", "11", "--device", "cpu", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs"] == 11
