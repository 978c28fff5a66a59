"""Catalogue throughput on Ray (issue 21; docs/scale-out.md "Measured here"). Nothing is
pass/fail; it prints one table of measured numbers.

    python bench/bench_scale.py [--movies 8] [--seconds 60] [--size 640x360] [--models tiny]
                                [--json FILE]

On one machine, with a real Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``: a head
node, plus a second node for two workers; 1 CPU each):

1. ``--movies`` generated 24 fps H.264 + AAC movies of ``--seconds`` each (5 s shots);
2. four runs of the same catalogue, each into a fresh output folder, in this order:
   - **local**: ``mega-pipe extract`` in one process (no Ray), the reference;
   - **actors x1**: ``extract --ray`` on a 1-CPU cluster: one actor that keeps its models (the
     shape we ship);
   - **tasks x1**: the same cluster, but one Ray *task* per movie that builds its models anew
     (the other shape considered: model start-up paid per movie);
   - **actors x2**: ``extract --ray`` on a 2-node, 2-CPU cluster: two actors;
3. for each: wall seconds, frames per second, movie-hours per hour, and Ray's overhead per movie
   = (Ray x1 wall - local wall) / movies. Each run is a fresh Python process; its time starts
   once mega-pipe is imported (so interpreter start-up is not counted, model start-up and Ray's
   actor/task start-up are). The cluster's own start-up is timed apart (it is paid once per
   cluster, not per catalogue).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")

from mega_pipe.pipeline.demo import make_movie  # noqa: E402


def timed(shape: str, movies: list[Path], out: Path, models: str, address: str = "") -> float:
    """Seconds one shape takes over the catalogue, measured in a fresh process."""
    r = subprocess.run([sys.executable, __file__, "--shape", shape, "--out", str(out),
                        "--models", models, "--address", address, *map(str, movies)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{shape} failed:\n{r.stderr[-3000:]}")
    return float(r.stdout.strip().splitlines()[-1])


def run_shape(shape: str, movies: list[Path], out: Path, models: str, address: str) -> float:
    from mega_pipe.pipeline.catalogue import CatalogueJob, MovieWorker, run_catalogue
    from mega_pipe.pipeline.inputs import ExtractConfig, MovieInput
    from mega_pipe.pipeline.ray_run import run_on_ray

    job = CatalogueJob("extract", out, ExtractConfig(model_set=models, progress=False))
    inputs = [MovieInput(m) for m in movies]
    t0 = time.perf_counter()
    if shape == "tasks":                    # one task per movie, models built in each
        import ray

        ray.init(address=address, logging_level="WARNING", log_to_driver=False)

        @ray.remote(num_cpus=1)
        def one(inp) -> str:
            return MovieWorker(job).run(inp)["status"]

        statuses = ray.get([one.remote(inp) for inp in inputs])
    else:
        remote = functools.partial(run_on_ray, address=address) if address else None
        results, _ = run_catalogue(job, inputs, remote=remote, progress=False)
        statuses = [r["status"] for r in results]
    seconds = time.perf_counter() - t0
    assert statuses == ["done"] * len(movies), statuses
    return seconds


def cluster(nodes: int):
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80_000_000}
    t0 = time.perf_counter()
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(nodes - 1):
        c.add_node(**node)
    c.wait_for_nodes()
    return c, time.perf_counter() - t0


def output_size(root: Path) -> tuple[int, int]:
    """Bytes of every Parquet file under ``root`` and the float values they hold (vector
    columns), for the bytes-per-movie-hour projection at other vector sizes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    size = values = 0
    for f in root.rglob("*.parquet"):
        size += f.stat().st_size
        table = pq.read_table(f)
        for col in table.columns:
            if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
                values += sum(len(chunk.flatten()) for chunk in col.chunks)
    return size, values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movies", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--models", default="tiny")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--shape", help=argparse.SUPPRESS)      # internal: one timed run
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--address", default="", help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.shape:
        print(run_shape(a.shape, a.paths, a.out, a.models, a.address))
        return
    w, h = (int(x) for x in a.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    movies = []
    for i in range(a.movies):
        path = root / "movies" / f"m{i:02d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_movie(path, [5] * (a.seconds // 5), size=(w, h), fps=Fraction(24))
        movies.append(path)
    frames = a.movies * a.seconds * 24
    rows: dict[str, dict] = {}

    def row(name: str, seconds: float, **extra) -> None:
        rows[name] = {"wall_s": round(seconds, 2), "frames_per_s": round(frames / seconds, 1),
                      "movie_hours_per_hour": round(a.movies * a.seconds / seconds, 1), **extra}
        print(f"{name:>12}: {seconds:7.1f} s  {frames / seconds:7.1f} frames/s  "
              f"{a.movies * a.seconds / seconds:6.1f} movie-hours/hour", flush=True)

    row("local", timed("local", movies, root / "local", a.models))
    c, up1 = cluster(1)
    try:
        row("actors x1", timed("actors", movies, root / "a1", a.models, c.address),
            cluster_start_s=round(up1, 1))
        row("tasks x1", timed("tasks", movies, root / "t1", a.models, c.address))
    finally:
        c.shutdown()
    c, up2 = cluster(2)
    try:
        row("actors x2", timed("actors", movies, root / "a2", a.models, c.address),
            cluster_start_s=round(up2, 1))
    finally:
        c.shutdown()
    overhead = (rows["actors x1"]["wall_s"] - rows["local"]["wall_s"]) / a.movies
    written, floats = output_size(root / "local")
    result = {"movies": a.movies, "seconds_each": a.seconds, "size": a.size, "models": a.models,
              "cpus": os.cpu_count(), "runs": rows,
              "ray_overhead_per_movie_s": round(overhead, 2),
              "speedup_2_vs_1_workers": round(rows["actors x1"]["wall_s"] / rows["actors x2"]["wall_s"], 2),
              "tasks_vs_actors": round(rows["tasks x1"]["wall_s"] / rows["actors x1"]["wall_s"], 2),
              "bytes_written_per_movie_hour": round(written * 3600 / (a.movies * a.seconds)),
              "parquet_bytes_per_float": round(written / floats, 3)}
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
