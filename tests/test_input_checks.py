"""Inputs that used to pass silently (issue 8): truncated files, subtitles for another movie,
several audio/subtitle tracks; and what the manifest records about the source and the timing.
Real FFmpeg decoding of generated files throughout."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ffmpeg
from mega_pipe.manifests.errors import InputError
from mega_pipe.manifests.features import FeatureFolder
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.decode import AUDIO_RATE, MovieDecoder
from mega_pipe.pipeline.probe import probe


def extract(*args: str) -> int:
    return main(["extract", "--models", "tiny", "--no-progress", *args])


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def srt(path: Path, cues: list[tuple[float, float, str]]) -> Path:
    def ts(t):
        return f"00:00:{int(t):02d},{round(t % 1 * 1000):03d}"

    path.write_text("".join(f"{i + 1}\n{ts(a)} --> {ts(b)}\n{text}\n\n"
                            for i, (a, b, text) in enumerate(cues)))
    return path


@pytest.fixture(scope="module")
def cut_files(tmp_path_factory) -> dict[str, Path]:
    """A 6 s fast-start MP4 (index first, so the first half still probes as 6 s), its MKV remux,
    and the first half of each, as a broken download leaves them."""
    d = tmp_path_factory.mktemp("cut")
    files = {"mp4": d / "full.mp4", "mkv": d / "full.mkv"}
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=6", "-f", "lavfi", "-i",
           "sine=f=440:d=6", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
           "-movflags", "+faststart", str(files["mp4"]))
    ffmpeg("-i", str(files["mp4"]), "-c", "copy", str(files["mkv"]))
    for ext in ("mp4", "mkv"):
        data = files[ext].read_bytes()
        files[f"half_{ext}"] = d / f"half.{ext}"
        files[f"half_{ext}"].write_bytes(data[:len(data) // 2])
    return files


def test_truncated_files_warn(tmp_path, cut_files):
    for ext in ("mp4", "mkv"):
        assert extract(str(cut_files[f"half_{ext}"]), "--modalities", "clip",
                       "--id", ext, "--out", str(tmp_path)) == 0
        w = manifest(tmp_path / ext)["warnings"]
        assert any("decoding ended at 3.0 s of the 6.0 s" in x and "truncated" in x for x in w), w
        assert any(x.startswith("ffmpeg reported") and "decoding error" in x for x in w), w
    assert extract(str(cut_files["mp4"]), "--modalities", "clip", "--out", str(tmp_path)) == 0
    assert manifest(tmp_path / "full")["warnings"] == []


def test_strict_fails_on_warnings_fresh_or_cached(tmp_path, capsys, cut_files):
    half = str(cut_files["half_mp4"])
    assert extract(half, "--modalities", "clip", "--strict", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "error: half: failed (--strict) on 2 warnings" in err and "truncated" in err
    assert not (tmp_path / "half").exists()                 # nothing half-written
    # a strict rerun of a cached result that has warnings fails as well
    assert extract(half, "--modalities", "clip", "--out", str(tmp_path)) == 0
    capsys.readouterr()
    assert extract(half, "--modalities", "clip", "--strict", "--out", str(tmp_path)) == 2
    assert "failed (--strict)" in capsys.readouterr().err
    # a clean movie passes
    assert extract(str(cut_files["mp4"]), "--modalities", "clip", "--strict",
                   "--out", str(tmp_path)) == 0


def test_subtitles_outside_the_movie_warn_also_when_shots_are_cached(tmp_path, cut_files):
    subs = srt(tmp_path / "subs.srt", [(0.5, 2.0, "Inside."), (4.0, 5.0, "Late."),
                                      (10.0, 11.0, "Far too late.")])
    full, half = str(cut_files["mp4"]), str(cut_files["half_mp4"])
    assert extract(full, "--modalities", "clip,subtitle", "--subtitles", str(subs),
                   "--out", str(tmp_path)) == 0
    assert "subtitles: 1 of 3 cues lie outside the movie's 0–6.0 s (wrong file or offset?)" \
        in manifest(tmp_path / "full")["warnings"]
    # shots and clip come from the cache (no decoding): the checks use the stored timeline,
    # and what the decoder reported in the first run is kept
    assert extract(half, "--modalities", "clip", "--out", str(tmp_path)) == 0
    assert extract(half, "--modalities", "clip,subtitle", "--subtitles", str(subs),
                   "--out", str(tmp_path)) == 0
    m = manifest(tmp_path / "half")
    assert m["stages"]["decode"]["cached"] and m["stages"]["shots"]["cached"]
    w = m["warnings"]
    assert any("2 of 3 cues lie outside the movie's 0–3.0 s: most do not fit" in x for x in w), w
    assert any("truncated" in x for x in w) and any("decoding error" in x for x in w), w


@pytest.fixture(scope="module")
def tracks_movie(tmp_path_factory) -> Path:
    """4 s of video with two audio tracks (440 Hz English, 1000 Hz French) and two subtitle
    tracks (English, French)."""
    d = tmp_path_factory.mktemp("tracks")
    eng = srt(d / "eng.srt", [(0.5, 2.0, "Hello there.")])
    fra = srt(d / "fra.srt", [(0.5, 2.0, "Bonjour.")])
    path = d / "tracks.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=4", "-f", "lavfi", "-i",
           "sine=f=440:d=4", "-f", "lavfi", "-i", "sine=f=1000:d=4", "-i", str(eng), "-i", str(fra),
           "-map", "0", "-map", "1", "-map", "2", "-map", "3", "-map", "4",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac", "-c:s", "srt",
           "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
           "-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=fra", str(path))
    return path


@pytest.mark.parametrize("choice, freq", [(None, 440), ("0", 440), ("1", 1000), ("fra", 1000)])
def test_audio_track_choice_decodes_that_stream(tracks_movie, choice, freq):
    info = probe(tracks_movie, audio_track=choice)
    assert [(t.track, t.language) for t in info.audio_tracks] == [(0, "eng"), (1, "fra")]
    with MovieDecoder(info, 64) as dec:
        for _ in dec.frames():
            pass
        audio = dec.take_audio()
    spectrum = np.abs(np.fft.rfft(audio[:AUDIO_RATE]))    # 1 s of audio: 1 Hz per bin
    assert abs(np.argmax(spectrum) - freq) <= 2


def test_unknown_track_is_one_clear_error(tracks_movie):
    with pytest.raises(InputError, match=r"--audio-track deu: no such audio track "
                                         r"\(the movie has #0 \(eng\), #1 \(fra\)\)"):
        probe(tracks_movie, audio_track="deu")
    with pytest.raises(InputError, match="--subtitle-track 2: no such subtitle track"):
        probe(tracks_movie, subtitle_track="2")


def test_tracks_in_manifest_and_cache_keys(tmp_path, capsys, tracks_movie):
    out = tmp_path / "tracks"
    assert extract(str(tracks_movie), "--modalities", "audio,subtitle", "--out", str(tmp_path)) == 0
    m = manifest(out)
    assert [(t["track"], t["language"], t["channels"]) for t in m["probe"]["audio_tracks"]] == \
        [(0, "eng", 1), (1, "fra", 1)]
    assert [(s["index"], s["language"]) for s in m["probe"]["subtitles"]] == [(0, "eng"), (1, "fra")]
    assert "2 audio tracks, using #0 (eng); choose with --audio-track" in m["warnings"]
    assert "2 subtitle tracks, using #0 (eng); choose with --subtitle-track" in m["warnings"]
    assert pq.read_table(out / "samples" / "subtitle.parquet")["text"].to_pylist() == ["Hello there."]
    eng = FeatureFolder(out).read_samples('audio')["vectors"]

    # another track recomputes that modality only; the shots are reused
    assert extract(str(tracks_movie), "--modalities", "audio,subtitle", "--audio-track", "fra",
                   "--subtitle-track", "1", "--out", str(tmp_path)) == 0
    m = manifest(out)
    assert m["stages"]["shots"]["cached"] and not m["stages"]["audio"].get("cached")
    assert m["probe"]["audio"]["language"] == "fra" and m["config"]["audio_track"] == "fra"
    assert not any("tracks, using" in w for w in m["warnings"])
    assert pq.read_table(out / "samples" / "subtitle.parquet")["text"].to_pylist() == ["Bonjour."]
    assert not np.allclose(FeatureFolder(out).read_samples('audio')["vectors"], eng)
    # the same streams named by number: nothing to do
    capsys.readouterr()
    assert extract(str(tracks_movie), "--modalities", "audio,subtitle", "--audio-track", "1",
                   "--subtitle-track", "fra", "--out", str(tmp_path)) == 0
    assert capsys.readouterr().out.rstrip().endswith("[cached]")
    # an unknown track: one error line, before any decoding
    assert extract(str(tracks_movie), "--audio-track", "deu", "--out", str(tmp_path / "x")) == 2
    err = capsys.readouterr().err
    assert "error: --audio-track deu: no such audio track" in err and "decoded" not in err


def test_manifest_provenance_and_startup_timing(tmp_path, capsys, monkeypatch, cut_files):
    monkeypatch.chdir(tmp_path)
    srt(Path("subs.srt"), [(0.5, 2.0, "Hello.")])
    Path("synopsis.txt").write_text("A test pattern plays. Then it stops.")
    assert extract(str(cut_files["mp4"]), "--modalities", "clip,subtitle", "--subtitles",
                   "subs.srt", "--synopsis", "synopsis.txt", "--out", "out") == 0
    m = manifest(Path("out/full"))
    src = m["source"]
    assert src["subtitles"] == str(tmp_path.resolve() / "subs.srt")
    assert src["synopsis"] == str(tmp_path.resolve() / "synopsis.txt")
    assert src["mtime"] == os.stat(cut_files["mp4"]).st_mtime
    # model start-up is reported apart from the decoding time
    d = m["stages"]["decode"]
    assert d["model_startup_seconds"] > 0 and d["decode_seconds"] < d["seconds"]
    assert 0 <= d["model_wait_seconds"] < d["seconds"]
    log = capsys.readouterr().err
    assert f"in {d['decode_seconds']:.1f} s; model start-up {d['model_startup_seconds']:.1f} s" in log
