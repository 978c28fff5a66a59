"""Digests of what mega-pipe writes for a fixed input: to show that a refactoring changed no
output. Run it before and after, on the same machine, and compare the lines.

    python bench/output_digest.py WORKDIR --scene-checkpoint S.pt --act-checkpoint A.pt

It generates a fixed 8-shot movie with subtitles and a synopsis (pipeline/demo.py), extracts it
with the tiny model set, segments it with the given checkpoints (or the checkpoint-free methods),
and prints the sha256 of every Parquet file the extraction wrote and of ``boundaries.json`` without
its ``provenance`` (which names the code version) and ``movie.path``. ``manifest.json`` is left
out: it records timings and the code version.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from pathlib import Path

from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.demo import SAMPLE_SYNOPSIS, make_movie, write_srt

SHOTS = [2, 1.5, 2.5, 1.5, 2, 1.5, 2, 2.5]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run(work: Path, checkpoints: list[str]) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    movie = work / "fixed.mp4"
    if not movie.exists():
        make_movie(movie, SHOTS, size=(160, 90))
        write_srt(work / "fixed.srt")
        (work / "fixed.synopsis.txt").write_text(SAMPLE_SYNOPSIS)
    feats = work / "features"
    common = ["--models", "tiny", "--no-progress", "--synopsis", str(work / "fixed.synopsis.txt")]
    if main(["extract", str(movie), "--out", str(feats), *common]) != 0:
        sys.exit("extract failed")
    out = work / "boundaries.json"
    if main(["segment", str(movie), "--out", str(out), "--features", str(feats), *common,
             *checkpoints]) != 0:
        sys.exit("segment failed")
    lines = [f"{p.relative_to(feats)}  {digest(p)}" for p in sorted(feats.rglob("*.parquet"))]
    doc = json.loads(out.read_text())
    doc.pop("provenance")
    doc["movie"].pop("path")
    blob = json.dumps(doc, sort_keys=True).encode()
    lines.append(f"boundaries.json (no provenance)  {hashlib.sha256(blob).hexdigest()[:16]}")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", type=Path, help="scratch folder (use a new one for each run: reruns reuse features)")
    ap.add_argument("--scene-checkpoint")
    ap.add_argument("--act-checkpoint")
    a = ap.parse_args()
    ck = [x for k, v in (("--scene-checkpoint", a.scene_checkpoint),
                         ("--act-checkpoint", a.act_checkpoint)) if v for x in (k, v)]
    with contextlib.redirect_stdout(sys.stderr):       # the commands' own summary lines
        lines = run(a.work, ck)
    print("\n".join(lines))
