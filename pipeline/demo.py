"""Synthetic sample movies (FFmpeg lavfi sources with known cuts, audio and subtitles).

Used by ``mega-pipe demo`` (pipeline/cli/demo.py) (the README's first command: no download needed) and by the tests.
"""
from __future__ import annotations

import logging
import math
import subprocess
from fractions import Fraction
from pathlib import Path

from ..manifests.atomic import check_output_dir
from ..manifests.features import FeatureFolder
from .decode import ffmpeg_exe
from .extract import run_extract
from .inputs import ExtractConfig, MovieInput

log = logging.getLogger(__name__)

# Visually distinct sources, so that every junction is a hard cut.
SOURCES = (
    "testsrc2=s={w}x{h}:r={r}",
    "smptebars=s={w}x{h}:r={r}",
    "rgbtestsrc=s={w}x{h}:r={r}",
    "color=c=0x3060a0:s={w}x{h}:r={r}",
    "yuvtestsrc=s={w}x{h}:r={r}",
    "pal100bars=s={w}x{h}:r={r}",
    "mandelbrot=s={w}x{h}:r={r}",
)

SAMPLE_SUBTITLES = [
    (0.5, 2.5, "Where are we going?"),
    (3.0, 5.0, "<i>Somewhere</i> the sea can't reach."),
    (7.2, 9.8, "Then we walk until morning."),
    (12.0, 14.5, "Look! The lights of the city."),
]

SAMPLE_SYNOPSIS = (
    "Two travellers leave their village at dawn. They argue about the road. "
    "A storm forces them to shelter in a ruined tower. In the tower they find a map. "
    "The map leads them to the city, where the story ends."
)


def make_movie(path: Path, shot_seconds: list[float], *, size=(320, 180), fps=Fraction(25),
               audio: bool = True, vcodec: str = "libx264", sources=SOURCES,
               preset: str = "ultrafast", extra: list[str] | None = None) -> list[int]:
    """Write a movie whose shots last ``shot_seconds`` (each a different lavfi source, joined by
    hard cuts). Returns the frame numbers of the cuts."""
    w, h = size
    r = f"{fps.numerator}/{fps.denominator}"
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y"]
    for i, sec in enumerate(shot_seconds):
        src = sources[i % len(sources)].format(w=w, h=h, r=r)
        cmd += ["-f", "lavfi", "-t", f"{sec}", "-i", src]
    n = len(shot_seconds)
    if audio:
        cmd += ["-f", "lavfi", "-t", f"{sum(shot_seconds)}", "-i",
                "sine=frequency=330:sample_rate=44100,volume=0.3"]
    chains = "".join(f"[{i}:v]format=yuv420p,setsar=1,settb=1/{fps.numerator * 1000}[v{i}];"
                     for i in range(n))
    graph = chains + "".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    cmd += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        cmd += ["-map", f"{n}:a", "-c:a", "aac", "-b:a", "64k"]
    cmd += ["-c:v", vcodec, "-pix_fmt", "yuv420p"]
    if vcodec == "libx264":
        cmd += ["-preset", preset]
    cmd += (extra or []) + [str(path)]
    subprocess.run(cmd, check=True)
    # a lavfi source cut with -t keeps the frames whose PTS is < t: ceil(t * fps) frames
    cuts, acc = [], 0
    for sec in shot_seconds[:-1]:
        acc += math.ceil(Fraction(sec).limit_denominator(1000) * fps)
        cuts.append(acc)
    return cuts


def write_srt(path: Path, cues=SAMPLE_SUBTITLES, encoding: str = "utf-8") -> None:
    def ts(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    body = "\n".join(f"{i + 1}\n{ts(a)} --> {ts(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues))
    path.write_text(body, encoding=encoding)


def make_sample(folder: Path) -> dict:
    """A 16 s sample movie with 4 shots, audio, a sidecar .srt and a synopsis."""
    folder.mkdir(parents=True, exist_ok=True)
    movie = folder / "sample.mp4"
    cuts = make_movie(movie, [4, 3.5, 5, 3.5])
    write_srt(folder / "sample.srt")
    (folder / "sample.synopsis.txt").write_text(SAMPLE_SYNOPSIS + "\n")
    return {"movie": movie, "subtitles": folder / "sample.srt",
            "synopsis": folder / "sample.synopsis.txt", "cuts": cuts}


def run_demo(out: Path, cfg: ExtractConfig) -> tuple[dict, dict, list[dict]]:
    """``mega-pipe demo``: a generated sample movie (:func:`make_sample`, in ``out/input``)
    through ``extract`` into ``out/features``. Returns the sample, the extract manifest and the
    shots (frames and seconds)."""
    check_output_dir(out, "--out")
    sample = make_sample(out / "input")
    log.info("sample movie: %s (cuts at frames %s)", sample["movie"], sample["cuts"])
    [manifest] = run_extract([MovieInput(sample["movie"], sample["subtitles"],
                                         sample["synopsis"])], out / "features", cfg)
    shots = FeatureFolder(out / "features" / manifest["movie_id"]).read_shots(
        ["shot_idx", "start_frame", "end_frame", "start_s", "end_s"]).to_pylist()
    return sample, manifest, shots
