"""Extraction against the cost of decoding, with a per-stage account (issue 20: extract within
1.2x of decode-only on a 10-minute 1080p movie, 2 cores).

Prints measured times and ratios; nothing is pass/fail:

    python bench/bench_extract.py [--minutes 2,10,30] [--runs 3] [--movie PATH] [--models tiny]
                                  [--also-tree DIR] [--floor] [--json FILE]

1. a 1080p24 H.264 + AAC movie of 5 s shots (120 in 10 minutes) is generated with FFmpeg unless
   given: up to 2 minutes are encoded directly; longer movies repeat that 2-minute encode
   (FFmpeg's concat demuxer, stream copy), which decodes at exactly the same cost per frame and
   takes seconds instead of ~1 minute of encoding per minute of movie;
2. for each movie, ``--runs`` rounds, each running in turn: decode-only
   (``ffmpeg -threads 2 -i movie -map 0:v -f null -``), optionally FFmpeg with extract's own
   filter graph into ``-f null`` (``--floor``: decode + scale + RGB, what no Python work can go
   below), ``mega-pipe extract --models tiny`` (fresh output), and optionally the same command
   run from another checkout (``--also-tree DIR``: DIR is the root of a plain
   ``git worktree add DIR COMMIT``, e.g. the code before a change; its processes import
   ``mega_pipe`` only from a temporary link ``mega_pipe -> DIR``, never from the installed
   checkout, and check that ``mega_pipe.pipeline.cli`` comes from DIR, failing otherwise);
3. per command: wall seconds (minimum, and spread = (max - min) / min), CPU seconds (user +
   system of the command and its children, FFmpeg included) and peak RSS; the ratio of the
   minima to decode-only; and the per-stage account of the fastest extract run (wall and CPU
   seconds per stage, from its manifest: docs/decoding.md, "Where the time goes").
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
# with film-grain-like temporal noise and encoded at a requested 8 Mbit/s, a typical rate for 1080p
# H.264 film encodes (x264 veryfast reaches ~6.4 Mbit/s on these sources, docs/decoding.md):
# decoding cost follows the bitrate, and clean test patterns would compress to ~1 Mbit/s and
# decode several times faster than a real film.
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
SHOT_S = 5.0
BASE_MINUTES = 2.0


def bench_movie(work: Path, minutes: float) -> Path:
    """The generated benchmark movie of ``minutes`` (cached in ``work``)."""
    movie = work / f"bench_1080p_{minutes:g}min_{SHOT_S:g}s_grain8M.mp4"
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


def run_cmd(cmd: list[str], env: dict | None = None, log: bool = False) -> dict:
    """Run ``cmd``; its wall seconds, CPU seconds (with its children) and peak RSS (MB; the
    largest of the process and its waited-for children)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env,
                         stderr=subprocess.DEVNULL if log else None)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{cmd[0]} ... failed ({p.returncode})")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "max_rss_mb": ru.ru_maxrss / 1024}


# The other tree's extract runs as ``python -c CHILD LINK extract ...`` (LINK = shim/mega_pipe ->
# DIR, the shim first on PYTHONPATH): the installed checkout is taken out of the child's import
# system (the editable install's finder would supply any module DIR lacks), ``mega_pipe`` searches
# LINK only, ``mega_pipe.pipeline.cli`` must come from DIR (else one line and exit 1), and it then
# runs as ``python -m mega_pipe.pipeline.cli`` would. With nothing after LINK it prints the file.
CHILD = """
import runpy, sys
from pathlib import Path
link = Path(sys.argv.pop(1))
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if not p.startswith("__editable__")]
import mega_pipe
mega_pipe.__path__ = [str(link)]
import mega_pipe.pipeline.cli as m
f = Path(m.__file__ or "?")
if not f.resolve().is_relative_to(link.resolve()):
    sys.exit(f"bench_extract: --also-tree: mega_pipe.pipeline.cli imported from {f.resolve()}, not from {link.resolve()}")
if len(sys.argv) == 1:
    print(f)
    sys.exit(0)
runpy.run_module("mega_pipe.pipeline.cli", run_name="__main__", alter_sys=True)
"""


def tree_env(tree: Path, shim: Path) -> tuple[dict, list[str], Path]:
    """How to run extract from the checkout ``tree`` (the root of a plain
    ``git worktree add DIR COMMIT``): the environment, the command's start (``CHILD``) and the
    file a child process imported ``mega_pipe.pipeline.cli`` from. The repository root's folders
    are the subpackages of ``mega_pipe`` (pyproject.toml's package-dir), so DIR holds no
    ``mega_pipe`` folder and DIR on PYTHONPATH alone would import the installed checkout instead.
    ``shim`` gets the link ``mega_pipe -> tree`` and is the child's PYTHONPATH; a child that
    would import any other code stops the benchmark with one line."""
    root = tree.resolve()
    if not (root / "pipeline" / "__init__.py").is_file() and (root / "mega_pipe" / "pipeline").is_dir():
        root = (root / "mega_pipe").resolve()      # a folder that already holds a mega_pipe link
    if not (root / "pipeline" / "__init__.py").is_file():
        raise SystemExit(f"bench_extract: --also-tree {tree}: no pipeline/__init__.py there; give the "
                         "root of a checkout (git worktree add DIR COMMIT)")
    link = shim / "mega_pipe"
    link.symlink_to(root, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(shim)}
    prefix = [sys.executable, "-c", CHILD, str(link)]
    p = subprocess.run(prefix, env=env, capture_output=True, text=True)
    out = p.stdout.strip()
    if p.returncode or not out:
        last = (p.stderr.strip().splitlines() or ["the check printed nothing"])[-1]
        raise SystemExit(last if last.startswith("bench_extract:") else
                         f"bench_extract: --also-tree {tree}: {last}")
    return env, prefix, Path(out).resolve()


def floor_cmd(ff: str, movie: Path, frame_size: int) -> list[str]:
    """FFmpeg with extract's own video filter graph, into -f null: decode + scale + RGB."""
    from mega_pipe.pipeline.decode import MovieDecoder
    from mega_pipe.pipeline.probe import probe

    dec = MovieDecoder(probe(movie), frame_size, audio=False)
    cmd = dec._command(None)
    return cmd[:cmd.index("-f")] + ["-f", "null", "-"]   # its showinfo log included


def summary(runs: list[dict]) -> dict:
    walls = [r["wall"] for r in runs]
    return {"runs_s": [round(w, 2) for w in walls], "min_s": round(min(walls), 2),
            "spread": round((max(walls) - min(walls)) / min(walls), 3),
            "cpu_min_s": round(min(r["cpu"] for r in runs), 2),
            "max_rss_mb": round(max(r["max_rss_mb"] for r in runs), 1)}


def stage_table(m: dict) -> list[tuple[str, float | None, float | None]]:
    """(stage, wall s, CPU s) rows from one extract manifest's account."""
    dec = m["stages"]["decode"]
    acc = dec.get("account")
    if not acc:
        return [("decode pass (no account in this version)", dec["decode_seconds"], None)]
    th, main = acc["threads"], acc["main"]
    get = lambda k: main.get(k, {"wall": 0.0, "cpu": 0.0})  # noqa: E731
    rows = [("FFmpeg decode + filter (process)", th.get("ffmpeg_wall_s"), th.get("ffmpeg_cpu")),
            ("pipe reads (video reader thread)", None, th.get("video_reader_cpu")),
            ("  reader blocked on a full queue", th.get("video_reader_blocked_s"), None),
            ("FFmpeg log / PTS parsing thread", None, th.get("log_reader_cpu")),
            ("audio pipe thread", None, th.get("audio_reader_cpu")),
            ("main: waiting for frames + PTS", get("frames")["wall"], get("frames")["cpu"]),
            ("main: downscale (clip/detector copy)", get("downscale")["wall"], get("downscale")["cpu"]),
            ("main: shot detection", get("shots")["wall"], get("shots")["cpu"]),
            ("main: sampling + clip cutting + batching", get("sampling")["wall"], get("sampling")["cpu"]),
            ("main: audio windows", get("audio_windows")["wall"], get("audio_windows")["cpu"]),
            ("main: waiting for the models / encoders", get("model_wait")["wall"] + get("encode_wait")["wall"],
             get("model_wait")["cpu"] + get("encode_wait")["cpu"]),
            ("model start-up (imports + build, encode thread)", acc["model_startup"]["wall"],
             acc["model_startup"]["cpu"])]
    for mod, e in acc["encode"].items():
        rows.append((f"encoder {mod} ({e['batches']} batches)", e["wall"], e["cpu"]))
    pool = m["stages"].get("pool", {}).get("account", {})
    for k in ("pool", "write"):
        if k in pool:
            rows.append(("pooling" if k == "pool" else "writing Parquet", pool[k]["wall"], pool[k]["cpu"]))
    rows.append(("all threads of the extract process during the pass", dec["seconds"], acc["process_cpu"]))
    return rows


def print_stage_table(rows, total_wall: float, total_cpu: float) -> None:
    print(f"  {'stage':<52} {'wall s':>8} {'CPU s':>8}")
    for name, w, c in rows:
        ws = f"{w:8.2f}" if w is not None else " " * 8
        cs = f"{c:8.2f}" if c is not None else " " * 8
        print(f"  {name:<52} {ws} {cs}")
    print(f"  {'whole command (wall; CPU with FFmpeg)':<52} {total_wall:8.2f} {total_cpu:8.2f}")


def bench_one(movie: Path, args, ff: str) -> dict:
    cmds: dict[str, tuple[list[str], dict | None]] = {
        "decode_only": ([ff, "-nostdin", "-v", "error", "-threads", "2", "-i", str(movie),
                         "-map", "0:v", "-f", "null", "-"], None)}
    frame_size = None
    outs: dict[str, Path] = {}

    def extract_cmd(name: str, tree: tuple | None, precision: str = "fp32"):
        out = args.work / f"out_{name}"
        outs[name] = out
        env, start = tree[:2] if tree else (None, [sys.executable, "-m", "mega_pipe.pipeline.cli"])
        extra = ["--encoder-precision", precision] if precision != "fp32" else []
        return ([*start, "extract", str(movie),
                 "--models", args.models, "--device", args.device, "--out", str(out),
                 "--no-progress", *extra], env)

    for precision in args.encoder_precisions.split(","):
        name = "extract" if precision == "fp32" else f"extract_{precision}"
        cmds[name] = extract_cmd(name, None, precision)
    if args.also_tree:
        cmds["extract_other_tree"] = extract_cmd("extract_other_tree", args.tree)
    runs: dict[str, list[dict]] = {k: [] for k in cmds}
    manifests: dict[str, list[dict]] = {k: [] for k in cmds if k.startswith("extract")}
    for i in range(args.runs):
        for name, (cmd, env) in cmds.items():
            if name in outs:
                subprocess.run(["rm", "-rf", str(outs[name])], check=True)
            r = run_cmd(cmd, env)
            runs[name].append(r)
            if name in outs:
                m = json.loads(next(outs[name].glob("*/manifest.json")).read_text())
                manifests[name].append(m)
                frame_size = frame_size or m["config"]["frame_size"]
            print(f"  round {i + 1} {name}: {r['wall']:.2f} s, CPU {r['cpu']:.2f} s, "
                  f"peak RSS {r['max_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        if args.floor and frame_size:
            r = run_cmd(floor_cmd(ff, movie, frame_size), log=True)
            runs.setdefault("ffmpeg_graph_floor", []).append(r)
            print(f"  round {i + 1} ffmpeg_graph_floor: {r['wall']:.2f} s, CPU {r['cpu']:.2f} s",
                  file=sys.stderr, flush=True)
    base = min(r["wall"] for r in runs["decode_only"])
    res = {"movie": str(movie), "commands": {}}
    for name, rs in runs.items():
        res["commands"][name] = {**summary(rs), "ratio_of_minima": round(min(r["wall"] for r in rs) / base, 3)}
    for name, ms in manifests.items():
        best = min(range(len(ms)), key=lambda j: runs[name][j]["wall"])
        m = ms[best]
        res["commands"][name].update({
            "duration_s": m["timeline"]["duration_s"], "frames": m["timeline"]["frames"],
            "shots": m["stages"]["shots"]["count"],
            "code_commit": (m.get("code_version") or {}).get("commit"),
            "python_max_rss_mb": m["stages"].get("process", {}).get("max_rss_mb"),
            "ffmpeg_max_rss_mb": (m["stages"]["decode"].get("account") or {}).get("threads", {}).get("ffmpeg_max_rss_mb"),
            "stages": stage_table(m), "wall_of_stages_run": round(runs[name][best]["wall"], 2),
            "cpu_of_stages_run": round(runs[name][best]["cpu"], 2)})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movie", type=Path, help="use this movie instead of generating one")
    ap.add_argument("--minutes", default="10",
                    help="lengths of the generated movies, comma-separated (default 10; each >= 2)")
    ap.add_argument("--runs", type=int, default=3, help="alternating rounds per movie (default 3)")
    ap.add_argument("--models", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--encoder-precisions", default="fp32",
                    help="comma-separated: one extract command per encoder precision, in the "
                    "same rounds (e.g. fp32,bf16 on a GPU)")
    ap.add_argument("--also-tree", type=Path, metavar="DIR",
                    help="also run extract with the code of the checkout DIR (its root, e.g. "
                    "`git worktree add DIR COMMIT` of the code before a change), imported as "
                    "mega_pipe through a temporary link; checked in every run")
    ap.add_argument("--floor", action="store_true",
                    help="also time FFmpeg with extract's filter graph into -f null")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mega-pipe-bench")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.also_tree:      # checked before any movie is generated
        shim = tempfile.TemporaryDirectory(prefix="bench-extract-tree-")   # removed at exit
        args.tree = tree_env(args.also_tree, Path(shim.name))
        print(f"--also-tree: extract_other_tree imports mega_pipe.pipeline.cli from {args.tree[2]}",
              file=sys.stderr, flush=True)
    ff = ffmpeg_exe()
    movies = [args.movie] if args.movie else [bench_movie(args.work, float(m))
                                              for m in args.minutes.split(",")]
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "load_before": os.getloadavg(), "models": args.models, "runs": args.runs,
               "movies": []}
    if args.also_tree:
        results["also_tree"] = {"dir": str(args.also_tree.resolve()), "imports": str(args.tree[2])}
    for movie in movies:
        print(f"== {movie}", file=sys.stderr, flush=True)
        res = bench_one(movie, args, ff)
        results["movies"].append(res)
        print(f"\n{movie.name}")
        for name, c in res["commands"].items():
            print(f"  {name:<20} min {c['min_s']:8.2f} s  runs {c['runs_s']}  spread {c['spread']:.1%}  "
                  f"CPU {c['cpu_min_s']:.1f} s  peak RSS {c['max_rss_mb']:.0f} MB  "
                  f"ratio {c['ratio_of_minima']:.3f}")
        for name, c in res["commands"].items():
            if "stages" in c:
                print(f"  -- {name}: {c['frames']} frames, {c['shots']} shots, per-stage account "
                      f"of its fastest run (Python peak RSS {c['python_max_rss_mb']} MB, "
                      f"code commit {c['code_commit']}):")
                print_stage_table(c["stages"], c["wall_of_stages_run"], c["cpu_of_stages_run"])
        sys.stdout.flush()
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
