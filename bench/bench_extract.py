"""Extraction throughput against the cost of decoding (issue: extract <= 1.3x decode-only).

One run on one machine; prints the measured times and the ratios, nothing is pass/fail:

    python bench/bench_extract.py [--minutes 10] [--movie PATH] [--models tiny] [--device cpu]

1. a 1080p H.264 movie (>= 2 min, hard cuts, AAC audio) is generated with FFmpeg unless given:
   up to 2 minutes are encoded directly; longer movies repeat that 2-minute encode (FFmpeg's concat
   demuxer, stream copy), which decodes at exactly the same cost per frame and takes seconds
   instead of ~1 minute of encoding per minute of movie;
2. decode-only: ``ffmpeg -i movie -f null -`` (every stream decoded, nothing written);
3. PySceneDetect's own ``detect()`` with AdaptiveDetector (it decodes the movie itself);
4. ``mega-pipe extract --models tiny`` (decode once + shots + all modalities + Parquet), fresh.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from mega_pipe.pipeline.decode import ffmpeg_exe
from mega_pipe.pipeline.demo import make_movie

# Cheap-to-render 1080p sources, neighbours visibly different (mandelbrot is slow at this size),
# with film-grain-like temporal noise and encoded at 8 Mbit/s, a typical rate for 1080p H.264 film
# encodes: decoding cost follows the bitrate, and clean test patterns would compress to ~1 Mbit/s
# and decode several times faster than a real film.
GRAIN = ",noise=alls=8:allf=t"
BENCH_SOURCES = tuple(s + GRAIN for s in (
    "testsrc2=s={w}x{h}:r={r}",
    "smptehdbars=s={w}x{h}:r={r}",
    "gradients=s={w}x{h}:r={r}",
    "testsrc=s={w}x{h}:r={r}",
    "pal100bars=s={w}x{h}:r={r}",
    "zoneplate=s={w}x{h}:r={r}",
))
RATE = ["-b:v", "8M", "-maxrate", "10M", "-bufsize", "20M"]
SHOT_S = 15.0
BASE_MINUTES = 2.0


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_movie(work: Path, minutes: float) -> Path:
    """The generated benchmark movie of ``minutes`` (cached in ``work``)."""
    movie = work / f"bench_1080p_{minutes:g}min_grain8M.mp4"
    if movie.exists():
        return movie
    if minutes <= BASE_MINUTES:
        n = max(1, round(minutes * 60 / SHOT_S))
        print(f"generating {movie} ({n} shots of {SHOT_S:g} s, 1080p24 H.264 + AAC)...", file=sys.stderr)
        make_movie(movie, [SHOT_S] * n, size=(1920, 1080), fps=Fraction(24), sources=BENCH_SOURCES,
                   preset="veryfast", extra=RATE)
        return movie
    base = bench_movie(work, BASE_MINUTES)
    parts = work / f"concat_{minutes:g}.txt"
    parts.write_text(f"file '{base.name}'\n" * math.ceil(minutes / BASE_MINUTES))
    print(f"generating {movie} (the {BASE_MINUTES:g}-minute movie repeated, stream copy)...",
          file=sys.stderr)
    tmp = movie.with_suffix(".part.mp4")
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0",
                    "-i", str(parts), "-t", f"{minutes * 60:g}", "-c", "copy", str(tmp)], check=True)
    tmp.rename(movie)
    return movie


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movie", type=Path, help="use this movie instead of generating one")
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="length of the generated movie (default 10; at least 2)")
    ap.add_argument("--models", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mega-pipe-bench")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    movie = args.movie or bench_movie(args.work, args.minutes)
    ff = ffmpeg_exe()
    decode = timed(lambda: subprocess.run([ff, "-nostdin", "-v", "error", "-i", str(movie), "-f", "null", "-"],
                                          check=True))

    def scenedetect_detect():
        from scenedetect import AdaptiveDetector, detect

        detect(str(movie), AdaptiveDetector())

    detect_s = timed(scenedetect_detect)

    out = args.work / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    cmd = [sys.executable, "-m", "mega_pipe.pipeline.cli", "extract", str(movie), "--models", args.models,
           "--device", args.device, "--out", str(out), "--no-progress"]
    extract_s = timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))
    manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
    rerun_s = timed(lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))

    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "movie": str(movie), "duration_s": manifest["timeline"]["duration_s"],
        "frames": manifest["timeline"]["frames"], "shots": manifest["stages"]["shots"]["count"],
        "decode_only_s": round(decode, 2),
        "scenedetect_detect_s": round(detect_s, 2),
        "extract_s": round(extract_s, 2),
        "extract_rerun_cached_s": round(rerun_s, 2),
        "extract_over_decode": round(extract_s / decode, 3),
        "scenedetect_over_decode": round(detect_s / decode, 3),
        "extract_over_scenedetect": round(extract_s / detect_s, 3),
        "encode_seconds": {k: round(v, 2) for k, v in manifest["stages"]["decode"]["encode_seconds"].items()},
        "models": args.models,
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
