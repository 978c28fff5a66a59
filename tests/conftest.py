"""Shared fixtures: real media from ../shared/data and synthetic movies made with FFmpeg."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from mega_pipe.pipeline.decode import ffmpeg_exe
from mega_pipe.pipeline.demo import make_movie

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEGA_PIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
PYSCENE = SHARED / "pyscenedetect-resources"
TESTVIDEO = PYSCENE / "testvideo.mp4"
BUNNY = SHARED / "bigbuckbunny-clip" / "bigbuckbunny.mp4"
SINTEL_SRT = SHARED / "sintel-subtitles" / "sintel_en.srt"
FORREST = SHARED / "studyforrest-structure"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test data missing: {path} (the shared/ folder must sit beside the repo)")
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cut_movie(media) -> tuple[Path, list[int]]:
    """8 s, 25 fps, 3 shots with hard cuts at frames 75 and 125, AAC audio."""
    path = media / "cuts.mp4"
    cuts = make_movie(path, [3, 2, 3])
    return path, cuts


@pytest.fixture(scope="session")
def vfr_movie(media) -> Path:
    """Variable frame rate: 20 frames at 10 fps (0–2 s) then 100 frames at 50 fps (2–4 s).
    Every frame's PTS is known exactly: t(n) = n/10 for n < 20, 2 + (n-20)/50 after."""
    path = media / "vfr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=50:d=2.4",
           "-vf", "setpts='if(lt(N,20),N/10,2+(N-20)/50)/TB'", "-frames:v", "120",
           "-fps_mode", "passthrough", "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


@pytest.fixture(scope="session")
def offset_movie(media) -> Path:
    """MPEG-TS whose streams start at 10 s (as broadcast captures do), with audio."""
    path = media / "offset.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=3", "-f", "lavfi", "-i",
           "sine=f=440:d=3", "-output_ts_offset", "10", "-c:v", "libx264", "-preset",
           "ultrafast", "-c:a", "aac", str(path))
    return path
