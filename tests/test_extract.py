"""End to end: `mega-pipe extract` on real and synthetic movies with the tiny model set."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import BUNNY, SINTEL_SRT, TESTVIDEO, need
from mega_pipe.manifests.features import (
    FeatureFolder,
    absent_modalities,
    shot_modalities,
    vectors_of,
)
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.demo import make_sample
from mega_pipe.pipeline.pooling import pool

VISUAL = ("clip", "place", "appr", "action")


def extract(*args: str) -> int:
    return main(["extract", "--models", "tiny", "--no-progress", *args])


@pytest.fixture(scope="module")
def testvideo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    assert extract(str(need(TESTVIDEO)), "--out", str(out)) == 0
    return out / "testvideo"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("sample")
    s = make_sample(folder / "in")
    out = folder / "out"
    assert extract(str(s["movie"]), "--subtitles", str(s["subtitles"]), "--synopsis",
                   str(s["synopsis"]), "--out", str(out)) == 0
    return {**s, "dir": out / "sample"}


def test_testvideo_shots_and_visual_modalities(testvideo_out):
    t = pq.read_table(testvideo_out / "shots.parquet")
    starts = t["start_frame"].to_pylist()
    assert starts[0] == 0
    for cut in (30, 180):
        assert any(abs(s - cut) <= 1 for s in starts), starts
    for m in VISUAL:
        assert m in t.column_names and f"{m}_count" in t.column_names
        assert (t[f"{m}_count"].to_numpy() > 0).all()
    manifest = json.loads((testvideo_out / "manifest.json").read_text())
    assert any("no audio" in w for w in manifest["warnings"]) and "audio" not in manifest["modalities"]
    # absent, not zero-filled: the column is there (one schema per run), all null, count 0
    assert t["audio"].null_count == t.num_rows and not t["audio_count"].to_numpy().any()
    assert "audio" not in shot_modalities(t.schema)
    assert absent_modalities(t.schema)["audio"] == "movie has no audio stream"
    assert manifest["probe"]["video"]["frame_rate"] == "30000/1001"
    assert t["shot_idx"].type.bit_width == 32 and t["start_frame"].type.bit_width == 64


def test_pooled_features_equal_overlap_mean_of_samples(testvideo_out, sample):
    for folder in (testvideo_out, sample["dir"]):
        t = pq.read_table(folder / "shots.parquet")
        for m in shot_modalities(t.schema):
            s = FeatureFolder(folder).read_samples(m)
            means, counts = pool(t["start_s"].to_numpy(), t["end_s"].to_numpy(),
                                 s["t_start"], s["t_end"], s["vectors"])
            np.testing.assert_array_equal(t[f"{m}_count"].to_numpy(), counts)
            np.testing.assert_allclose(vectors_of(t[m]), means, rtol=1e-6, atol=1e-7)


def test_per_second_sample_intervals_tile_the_movie(testvideo_out):
    s = FeatureFolder(testvideo_out).read_samples('clip')
    assert len(s["t_start"]) == 25                    # 24.024 s -> seconds 0..24
    np.testing.assert_array_equal(s["t_start"], np.arange(25))
    assert s["t_end"][-1] == pytest.approx(24.024)


def test_bunny_one_shot_with_audio(tmp_path):
    assert extract(str(need(BUNNY)), "--out", str(tmp_path)) == 0
    t = pq.read_table(tmp_path / "bigbuckbunny" / "shots.parquet")
    assert t.num_rows == 1
    assert t["audio_count"].to_pylist() == [6]        # all six 10 s windows overlap the one shot
    assert np.abs(vectors_of(t["audio"])).sum() > 0


def test_subtitles_and_synopsis(sample):
    d = sample["dir"]
    sub = pq.read_table(d / "samples" / "subtitle.parquet")
    assert sub["text"].to_pylist()[1] == "Somewhere the sea can't reach."   # markup stripped
    assert sub["t_start"].to_pylist()[0] == pytest.approx(0.5)
    syn = pq.read_table(d / "synopsis.parquet")
    assert syn.num_rows == 5 and syn["sentence_idx"].to_pylist() == [0, 1, 2, 3, 4]
    shots = pq.read_table(d / "shots.parquet")
    assert shots.num_rows == 4
    # shots [0, 4) [4, 7.5) [7.5, 12.5) [12.5, 16); cues 0.5-2.5, 3-5, 7.2-9.8, 12-14.5 s
    assert shots["subtitle_count"].to_pylist() == [2, 2, 2, 1]


def test_sintel_subtitles_pool_onto_a_movie(tmp_path, cut_movie):
    path, _ = cut_movie
    # Sintel's first cue is at 107 s: nothing overlaps an 8 s movie, so counts are 0 and
    # vectors zero, but the samples are all there.
    assert extract(str(path), "--subtitles", str(need(SINTEL_SRT)), "--out", str(tmp_path)) == 0
    t = pq.read_table(tmp_path / "cuts" / "shots.parquet")
    assert t["subtitle_count"].to_pylist() == [0, 0, 0]
    assert not vectors_of(t["subtitle"]).any()
    assert pq.read_table(tmp_path / "cuts" / "samples" / "subtitle.parquet").num_rows == 26


def test_rerun_skips_work_and_is_identical(tmp_path, capsys, cut_movie):
    path, _ = cut_movie
    assert extract(str(path), "--out", str(tmp_path), "--modalities", "clip,place") == 0
    d = tmp_path / "cuts"
    before = {p.name: p.stat().st_mtime_ns for p in (d / "samples").iterdir()}
    first = pq.read_table(d / "shots.parquet")
    capsys.readouterr()
    assert extract(str(path), "--out", str(tmp_path), "--modalities", "clip,place") == 0
    assert capsys.readouterr().out.rstrip().endswith("[cached]")
    assert {p.name: p.stat().st_mtime_ns for p in (d / "samples").iterdir()} == before
    assert pq.read_table(d / "shots.parquet").equals(first)
    # adding a modality computes only that one; the others are reused as they are
    assert extract(str(path), "--out", str(tmp_path), "--modalities", "clip,place,appr") == 0
    after = {p.name: p.stat().st_mtime_ns for p in (d / "samples").iterdir()}
    assert after["clip.parquet"] == before["clip.parquet"] and "appr.parquet" in after
    m = json.loads((d / "manifest.json").read_text())
    assert m["stages"]["clip"]["cached"] and m["stages"]["shots"]["cached"]
    assert not m["stages"]["appr"].get("cached")
    second = pq.read_table(d / "shots.parquet")
    np.testing.assert_array_equal(vectors_of(second["clip"]), vectors_of(first["clip"]))
    # another detector: only the shots (and pooling) are redone, and the summary says so
    capsys.readouterr()
    assert extract(str(path), "--out", str(tmp_path), "--modalities", "clip,place,appr",
                   "--detector", "content") == 0
    out = capsys.readouterr().out
    assert "[cached]" not in out and " s]" in out
    m = json.loads((d / "manifest.json").read_text())
    assert not m["stages"]["shots"]["cached"] and m["stages"]["clip"]["cached"]


def test_bf16_encoders_are_cached_apart_from_fp32(tmp_path, cut_movie):
    """--encoder-precision bf16 runs the encoders under bf16 autocast: features close to fp32
    but not equal, recorded in the manifest and never mistaken for the fp32 cache (either way)."""
    path, _ = cut_movie
    d = tmp_path / "cuts"

    def run(*extra: str) -> tuple[dict, np.ndarray]:
        assert extract(str(path), "--out", str(tmp_path), "--modalities", "clip", *extra) == 0
        return (json.loads((d / "manifest.json").read_text()),
                FeatureFolder(d).read_samples("clip")["vectors"])

    m32, fp32 = run()
    m16, bf16 = run("--encoder-precision", "bf16")
    assert m32["config"]["encoder_precision"] == "fp32" and m16["config"]["encoder_precision"] == "bf16"
    assert not m16["stages"]["clip"].get("cached") and m16["stages"]["shots"]["cached"]
    assert bf16.shape == fp32.shape and bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)
    cos = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cos.min() > 0.999
    again, fp32_again = run()
    assert not again["stages"]["clip"].get("cached")
    np.testing.assert_array_equal(fp32_again, fp32)


def test_contract_readable_by_polars_duckdb_pandas(sample):
    import duckdb
    import pandas as pd
    import polars as pl

    shots = sample["dir"] / "shots.parquet"
    df = pl.read_parquet(shots)
    assert df.height == 4 and df.schema["clip"].shape == (df["clip"][0].shape[0],)
    con = duckdb.connect()
    n, dim = con.execute(f"select count(*), max(len(clip)) from '{shots}'").fetchone()
    assert n == 4 and dim == df["clip"][0].shape[0]
    p = pd.read_parquet(shots)
    assert list(p["shot_idx"]) == [0, 1, 2, 3]
    txt = pl.read_parquet(sample["dir"] / "samples" / "subtitle.parquet")["text"].to_list()
    assert "Where are we going?" in txt
    assert pd.read_parquet(sample["dir"] / "synopsis.parquet")["text"].str.len().min() > 10


def test_offline_paper_fails_fast_listing_paths(tmp_path, capsys, monkeypatch, cut_movie):
    monkeypatch.setenv("MEGA_PIPE_WEIGHTS_DIR", str(tmp_path / "nowhere"))
    path, _ = cut_movie
    t0 = time.perf_counter()
    rc = main(["extract", str(path), "--models", "paper", "--offline", "--weights-dir",
               str(tmp_path / "empty"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2 and time.perf_counter() - t0 < 30
    err = capsys.readouterr().err
    assert str(tmp_path / "empty") in err and str(tmp_path / "nowhere") in err
    assert not (tmp_path / "out" / "cuts").exists()        # nothing half-written


def test_bad_input_one_line_others_carry_on(tmp_path, capsys, cut_movie):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 4096)
    path, _ = cut_movie
    rc = extract(str(bad), str(path), "--out", str(tmp_path / "out"), "--modalities", "clip")
    assert rc == 1
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "Traceback" not in err
    assert (tmp_path / "out" / "cuts" / "manifest.json").exists()
    assert not (tmp_path / "out" / "broken").exists()


def test_failure_mid_run_leaves_no_partial_output(tmp_path, monkeypatch, cut_movie):
    from mega_pipe.pipeline.decode_pass import BatchEncoder

    def crash(self, batch):
        raise RuntimeError("simulated crash during encoding")

    monkeypatch.setattr(BatchEncoder, "encode", crash)
    path, _ = cut_movie
    assert extract(str(path), "--out", str(tmp_path), "--modalities", "clip") == 1
    assert not (tmp_path / "cuts").exists()


def test_decoding_starts_before_the_model_libraries_are_imported(tmp_path, cut_movie):
    """The run is planned without torch; FFmpeg starts first and the imports overlap decoding."""
    import subprocess
    import sys

    path, _ = cut_movie
    code = f"""
import sys
from mega_pipe.pipeline import decode
enter = decode.MovieDecoder.__enter__
seen = []
def spy(self):
    seen.append("torch" in sys.modules)
    return enter(self)
decode.MovieDecoder.__enter__ = spy
from mega_pipe.pipeline.cli import main
rc = main(["extract", {str(path)!r}, "--models", "tiny", "--no-progress", "--out", {str(tmp_path)!r},
           "--modalities", "clip,action,audio"])
print(rc, seen, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.splitlines()[-1].split() == ["0", "[False]", "True"], out.stderr[-2000:]
    assert (tmp_path / "cuts" / "manifest.json").exists()


def test_batcher_collects_until_the_models_exist_then_encodes_in_their_batch_size():
    from concurrent.futures import Future, ThreadPoolExecutor

    from mega_pipe.extractors import build_extractors
    from mega_pipe.manifests.errors import MegaPipeError
    from mega_pipe.pipeline.decode_pass import BatchEncoder

    model = build_extractors("tiny", ["clip"])["clip"]
    frames = np.random.default_rng(0).integers(0, 256, (model.batch_size + 6, 224, 256, 3), np.uint8)
    built: Future = Future()
    with ThreadPoolExecutor(1) as worker:
        b = BatchEncoder(["clip"], built, worker)
        for i, f in enumerate(frames[:-1]):
            b.add(i, i + 1, f)
        assert b.size is None and b.submitted == 0        # nothing can be encoded yet
        built.set_result({"clip": model})
        b.add(len(frames) - 1, len(frames), frames[-1])
        # one full batch of 64 now; the other 6 wait for more inputs or the end (batches start
        # at multiples of the batch size, whenever the models became ready)
        assert b.size == model.batch_size and b.submitted == 1
        ts, te, vecs = b.results(end_time=1e9)["clip"]
        assert b.submitted == 2
    assert list(ts) == list(range(len(frames))) and list(te) == list(range(1, len(frames) + 1))
    np.testing.assert_allclose(vecs, model.encode(frames), atol=1e-5)

    failed: Future = Future()
    failed.set_exception(MegaPipeError("weights missing"))
    with ThreadPoolExecutor(1) as worker:
        b = BatchEncoder(["clip"], failed, worker)
        with pytest.raises(MegaPipeError, match="weights missing"):
            b.add(0, 1, frames[0])


def test_one_schema_for_every_movie_of_a_run(tmp_path):
    """Movies with and without audio/subtitles extracted with one model set share the
    shots.parquet schema, so a glob over the catalogue reads in one call in every reader."""
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds
    from mega_pipe.pipeline.demo import make_movie, write_srt

    make_movie(tmp_path / "talkie.mp4", [2, 2], size=(160, 90))
    write_srt(tmp_path / "talkie.srt")                               # sidecar subtitles
    make_movie(tmp_path / "silent.mp4", [2, 2], size=(160, 90), audio=False)
    out = tmp_path / "out"
    assert extract(str(tmp_path / "talkie.mp4"), str(tmp_path / "silent.mp4"), "--out", str(out)) == 0
    schemas = [pq.read_schema(out / m / "shots.parquet").remove_metadata() for m in ("talkie", "silent")]
    assert schemas[0] == schemas[1]

    glob = str(out / "*" / "shots.parquet")
    frames = {
        "polars": pl.read_parquet(glob).to_pandas(),
        "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{glob}')").df(),
        "pyarrow/pandas": ds.dataset(sorted(out.glob("*/shots.parquet")), format="parquet").to_table().to_pandas(),
    }
    for reader, df in frames.items():
        assert len(df) == 4, reader
        for m in ("audio", "subtitle"):
            silent, talkie = df[df.movie_id == "silent"], df[df.movie_id == "talkie"]
            assert silent[m].isna().all() and (silent[f"{m}_count"] == 0).all(), (reader, m)
            assert talkie[m].notna().all() and (talkie[f"{m}_count"] > 0).all(), (reader, m)

    silent = pq.read_schema(out / "silent" / "shots.parquet")
    assert absent_modalities(silent) == {"audio": "movie has no audio stream",
                                         "subtitle": "movie has no subtitles"}
    assert shot_modalities(silent) == list(VISUAL)
    manifest = json.loads((out / "silent" / "manifest.json").read_text())
    assert manifest["modalities"] == list(VISUAL)                    # what the movie really has
    # Readers see the absent modality as missing, never as a zero feature.
    from mega_pipe.model.data import available_modalities, read_movie

    assert available_modalities(out / "silent") == list(VISUAL)
    movie = read_movie(out / "silent", ["clip", "audio"], dims={"audio": 24})
    assert not movie.presence("audio").any() and movie.presence("clip").all()
