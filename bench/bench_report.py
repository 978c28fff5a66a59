"""How big and how fast is ``mega-pipe report`` for a 2-hour film with ~2,000 shots?

No real 2-hour movie is needed: the feature folder comes from the synthetic benchmark generator
(``mega_pipe.manifests.synth``: planted scene structure, so the similarity matrices show scene
blocks), its shot times rescaled to a 2-hour timeline, plus a subtitle track (a cue every ~4 s)
and a ``boundaries.json`` with scenes, boundary probabilities, turning points, acts and a
``sync_matrix``. With ``--movie-seconds`` the script also encodes a long test movie (one lavfi
source, a keyframe every 10 s like broadcast files) so that real thumbnails are cut by seeking.

Prints one JSON line per case: report seconds, HTML bytes, headless Chromium wall seconds and the
page's own render time (``data-render-ms``: from script start to every element drawn).

    python bench/bench_report.py [--shots 2000] [--out DIR] [--movie-seconds 7200 | --movie M]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from mega_pipe.manifests.atomic import write_json
from mega_pipe.manifests.boundaries import build_boundaries, finite_json
from mega_pipe.manifests.features import (
    FeatureFolder,
    samples_table,
    shots_table,
    vectors_of,
)
from mega_pipe.manifests.synth import SynthParams, _Shot, generate

MODALITIES = {"clip": 64, "place": 64, "appr": 64, "action": 64, "audio": 32, "subtitle": 32}


TP_POSITIONS = (0.11, 0.32, 0.51, 0.74, 0.89)       # TRIPOD's average turning-point positions


def make_long_inputs(root: Path, shots: int = 2000, duration_s: float = 7200.0, seed: int = 0,
                     movie: Path | None = None,
                     tp_positions: tuple[float, ...] = TP_POSITIONS) -> tuple[Path, Path]:
    """A feature folder and a boundaries.json for a synthetic film of about ``shots`` shots
    lasting ``duration_s``, its turning points near ``tp_positions`` (fractions of the shot
    count); returns (boundaries path, feature folder)."""
    root = Path(root)
    # the generator's films average ~4.2-4.3 shots per scene
    n_scenes = max(5, round(shots / 4.2))
    manifest_path = generate(root / "synth", 1, seed=seed, modalities=MODALITIES,
                             params=SynthParams(scenes=(n_scenes, n_scenes)), overwrite=True)
    entry = json.loads(manifest_path.read_text().splitlines()[0])
    folder = Path(entry["features"])
    if not folder.is_absolute():
        folder = manifest_path.parent / folder
    out = FeatureFolder(folder)
    table = out.read_shots()
    n = table.num_rows
    meta = out.modality_meta()
    scale = duration_s / float(table["end_s"][-1].as_py())
    fps = 25
    ends = np.round(table["end_s"].to_numpy() * scale * fps).astype(np.int64)
    ends = np.maximum(ends, np.arange(1, n + 1))           # every shot at least one frame
    starts = np.concatenate([[0], ends[:-1]])
    shot_rows = [_Shot(i, int(starts[i]), int(ends[i]), starts[i] / fps, ends[i] / fps) for i in range(n)]
    pooled = {m: (vectors_of(table[m]), np.ones(n, np.int32)) for m in meta}
    out.write_shots(shots_table(folder.name, shot_rows, pooled, meta))

    rng = np.random.default_rng(seed)
    total = ends[-1] / fps
    cue_starts = np.arange(1.0, total - 3, 4.0)
    texts = [f"Line {k}: {'so we meet again' if k % 3 else 'where does this road go?'}"
             for k in range(len(cue_starts))]
    sub_meta = {"dim": 8, "model_id": "synthetic", "weights_sha256": None, "sampling": "per cue"}
    out.write_samples(samples_table(folder.name, "subtitle", sub_meta, cue_starts, cue_starts + 2.5,
                                    rng.normal(size=(len(cue_starts), 8)), texts), "subtitle")

    labels = np.array([1 if v else 0 for v in entry["scene_labels"][:-1]] + [1])
    prob = np.clip(np.where(labels == 1, 0.75, 0.12) + 0.12 * rng.normal(size=n), 0, 1)
    pos = np.arange(n) / max(1, n - 1)
    post = np.stack([np.exp(-0.5 * ((pos - c) / 0.02) ** 2) + 1e-6 for c in tp_positions])
    post /= post.sum(1, keepdims=True)
    manifest = {"movie_id": folder.name,
                "source": {"path": str(Path(movie).absolute()) if movie else str(root / "long.mp4")},
                "timeline": {"duration_s": float(total), "frames": int(ends[-1])},
                "probe": {"video": {"frame_rate": f"{fps}/1"}}}
    shots = {"start_s": (starts / fps).tolist(), "end_s": (ends / fps).tolist(),
             "start_frame": starts.tolist(), "end_frame": ends.tolist()}
    doc = build_boundaries(manifest, folder, shots, {"prob": prob}, {"posteriors": post}, [], 0.5)
    n_sent = 30
    centre = (np.arange(n_sent) + 0.5) / n_sent
    sync = np.exp(-0.5 * ((pos[None, :] - centre[:, None]) / 0.03) ** 2) + 0.1 * rng.random((n_sent, n))
    doc["sync_matrix"] = np.round(sync, 4).tolist()
    doc["provenance"] = {"scene_checkpoint": "synthetic", "act_checkpoint": "synthetic",
                         "features": str(folder), "models": {}, "code_version": {"version": "bench"}}
    boundaries = root / "boundaries.json"
    write_json(boundaries, finite_json(doc), indent=None)
    return boundaries, folder


def make_long_movie(path: Path, seconds: float) -> None:
    """A ``seconds``-long 320×180 H.264 movie (one moving test pattern, keyframe every 10 s)."""
    from mega_pipe.pipeline.decode import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=s=320x180:r=25:d={seconds}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", "250", "-pix_fmt", "yuv420p", str(path)], check=True)


def chromium_render(html: Path, screenshot: Path | None = None, timeout: float = 300) -> dict:
    """Load ``html`` in headless Chromium; the page's status, shot count and render time, console
    errors, wall seconds, and the DOM after the page's script ran (``dom``)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        raise RuntimeError("no chromium found (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="mega-pipe-chromium-") as prof:
        base = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={prof}", "--enable-logging=stderr",
                "--v=0", "--window-size=1400,1800", "--virtual-time-budget=10000"]
        t0 = time.perf_counter()
        r = subprocess.run(base + ["--dump-dom", html.absolute().as_uri()], capture_output=True,
                           text=True, timeout=timeout)
        wall = time.perf_counter() - t0
        shot_wall = None
        if screenshot is not None:
            t0 = time.perf_counter()
            subprocess.run(base + [f"--screenshot={screenshot}", html.absolute().as_uri()],
                           capture_output=True, text=True, timeout=timeout)
            shot_wall = time.perf_counter() - t0
    body = re.search(r"<body([^>]*)>", r.stdout)
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1))) if body else {}
    console = [line for line in r.stderr.splitlines()
               if "Uncaught" in line or "CONSOLE" in line and "error" in line.lower()]
    return {"status": attrs.get("status"), "shots": int(attrs.get("shots", -1)),
            "render_ms": int(attrs.get("render-ms", -1)), "console_errors": console,
            "shot_elements": len(re.findall(r'<div class="shot[ "]', r.stdout)),
            "dump_dom_s": round(wall, 2), "screenshot_s": round(shot_wall, 2) if shot_wall else None,
            "dom": r.stdout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=7200.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--movie-seconds", type=float, default=0.0,
                    help="also encode a movie this long and cut real thumbnails (0: skip)")
    ap.add_argument("--movie", type=Path, default=None,
                    help="an existing long movie for the thumbnail case (instead of encoding one)")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="mega-pipe-bench-report-"))
    root.mkdir(parents=True, exist_ok=True)
    movie = args.movie
    if movie is not None:
        args.movie_seconds = float(subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
             str(movie)], capture_output=True, text=True).stdout or args.duration) \
            if shutil.which("ffprobe") else args.duration
    elif args.movie_seconds:
        movie = root / "long.mp4"
        t0 = time.perf_counter()
        make_long_movie(movie, args.movie_seconds)
        print(json.dumps({"movie_encode_s": round(time.perf_counter() - t0, 1),
                          "movie_bytes": movie.stat().st_size}), flush=True)
    duration = min(args.duration, args.movie_seconds) if movie else args.duration
    boundaries, folder = make_long_inputs(root, args.shots, duration, movie=movie)
    n = len(json.loads(boundaries.read_text())["shots"])
    from mega_pipe.pipeline.cli import main as cli

    cases = [("no-thumbnails", ["--no-thumbnails"])]
    if movie:
        cases.append(("thumbnails", []))
    for name, extra in cases:
        html = root / f"report-{name}.html"
        t0 = time.perf_counter()
        assert cli(["report", str(boundaries), "--out", str(html), *extra]) == 0
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert cli(["report", str(boundaries), "--out", str(root / "x.html"), "--no-thumbnails",
                    "--png", str(root / "png")]) == 0
        png_s = time.perf_counter() - t0 - seconds if name == "no-thumbnails" else None
        r = chromium_render(html, root / f"report-{name}.png")
        r.pop("dom")
        print(json.dumps({"case": name, "shots": n, "report_s": round(seconds, 2),
                          "html_bytes": html.stat().st_size, **r,
                          **({"png_extra_s": round(png_s, 2)} if png_s is not None else {})}), flush=True)


if __name__ == "__main__":
    main()
