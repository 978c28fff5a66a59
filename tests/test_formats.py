"""Other containers and codecs a user will feed: each is decoded once, cut into shots and pooled."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import PYSCENE, ffmpeg, need
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.probe import probe

SRC = ("-f lavfi -t 2 -i testsrc2=s=320x240:r=25 -f lavfi -t 2 -i smptebars=s=320x240:r=25 "
       "-f lavfi -t 4 -i sine=f=300").split()
JOIN = ["-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[v]", "-map", "[v]"]

FORMATS = {
    "mkv": ["-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libopus"],
    "webm": ["-map", "2:a", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
             "-c:a", "libopus"],
    "mov": ["-map", "2:a", "-c:v", "mjpeg", "-q:v", "5", "-c:a", "pcm_s16le"],
    "mpg": ["-map", "2:a", "-c:v", "mpeg2video", "-q:v", "4", "-c:a", "mp2"],
    "avi": ["-c:v", "mpeg4", "-q:v", "4"],                      # no audio stream
}


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_container_and_codec(tmp_path, ext):
    movie = tmp_path / f"two_shots.{ext}"
    ffmpeg(*SRC, *JOIN, *FORMATS[ext], str(movie))
    out = tmp_path / "out"
    assert main(["extract", str(movie), "--models", "tiny", "--modalities", "clip,action,audio",
                 "--out", str(out), "--no-progress"]) == 0
    d = out / "two_shots"
    shots = pq.read_table(d / "shots.parquet")
    assert [abs(s - 50) <= 1 for s in shots["start_frame"].to_pylist()[1:]] == [True]
    assert shots["end_s"].to_pylist()[-1] == pytest.approx(4.0, abs=0.05)
    has_audio = ext != "avi"
    assert "audio" in shots.column_names                      # absent columns are kept, all null
    assert (shots["audio"].null_count == 0) == has_audio
    m = json.loads((d / "manifest.json").read_text())
    assert m["probe"]["container"] and m["timeline"]["frames"] == 100


def test_anamorphic_display_aspect(tmp_path):
    """A 4:3-coded DVD-style frame with SAR 32:27 is shown 16:9: frames keep the display aspect."""
    movie = tmp_path / "anamorphic.mkv"
    ffmpeg("-f", "lavfi", "-t", "1", "-i", "testsrc2=s=720x480:r=25", "-vf", "setsar=32/27",
           "-c:v", "libx264", "-preset", "ultrafast", str(movie))
    info = probe(movie)
    assert (info.video.display_width, info.video.display_height) == (853, 480)


def test_mpeg4_part2_fades_file(tmp_path):
    """PySceneDetect's fades.mp4 (MPEG-4 Part 2): fade detector finds the fade-ins."""
    assert main(["extract", str(need(PYSCENE / "fades.mp4")), "--models", "tiny", "--modalities",
                 "clip", "--detector", "fade", "--out", str(tmp_path), "--no-progress"]) == 0
    shots = pq.read_table(tmp_path / "fades" / "shots.parquet")
    assert shots.num_rows >= 2 and shots["end_frame"].to_pylist()[-1] == 250
