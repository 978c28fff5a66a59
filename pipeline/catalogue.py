"""Catalogue runs (docs/scale-out.md): ``extract`` or ``segment`` over many movies, one unit of
work per movie, in this process or on a Ray cluster (``ray_run.py``), ending with a summary table.

- **Inputs** (``inputs.read_catalogue``): movie files, folders, globs, CSV / JSON Lines lists.
- **The unit** (:class:`MovieWorker`): one movie extracted (or segmented) with the worker's models,
  which are built once and kept for every movie the worker gets. It never raises for the movie's
  own failure: it returns an outcome (status, error line, timings, output), so that one bad movie
  never stops the others.
- **Retries** (:func:`settle`): a bad input (an unreadable file, bad subtitles: the same error
  every time) fails at once; an unexpected error or a lost worker is retried up to ``retries``
  times; a movie whose folder another run is writing right now is come back to later (it is
  then usually complete and skipped); missing weights stop the whole run (no movie can be done).
- **Nothing done twice**: a movie whose outputs are complete and whose inputs and config are
  unchanged is skipped (status ``cached``), through the same cache keys as a single-movie run.
- **Summary**: a Parquet table, one row per movie (:data:`SUMMARY_COLUMNS`), written atomically
  at the end of every catalogue run to its own new file.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
import traceback
from collections import Counter, deque
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..extractors.errors import ExtractorError, WeightsNotFoundError
from ..manifests.atomic import atomic_path, check_output_dir, check_output_file
from ..manifests.errors import BusyError, MegaPipeError
from .extract import extract_movie
from .inputs import ExtractConfig, check_ids, movie_id_of
from .models import ExtractorPool

log = logging.getLogger(__name__)

# A movie whose folder another run holds is tried again after this long (seconds).
BUSY_RETRY_S = 2.0


# --- The unit of work --------------------------------------------------------------------------


def extract_unit(worker: MovieWorker, inp) -> tuple[dict, bool]:
    """``extract``'s unit: the movie's manifest, and whether everything was cached."""
    job = worker.job
    manifest = job.extract_one(inp, job.out, job.cfg, worker.pool)
    return manifest, bool(manifest.get("up_to_date"))


@dataclass(frozen=True)
class CatalogueJob:
    """What every movie of a catalogue gets done; picklable (it travels to Ray workers).

    ``command``: "extract" (feature folders under ``out``) or "segment" (``out/<id>.json``,
    features under ``features``, with the checkpoints and decoding options given; ``cfg`` is
    then already ``segment.segment_config``'s). ``unit(worker, inp) -> (manifest, cached)``
    does one movie: :func:`extract_unit` (with ``extract_one``: a movie file, or key frames) or
    ``segment.segment_unit`` (a module-level function: Ray pickles it by name)."""

    command: str
    out: Path
    cfg: ExtractConfig
    _: KW_ONLY
    unit: Callable = extract_unit
    extract_one: Callable = extract_movie
    default_modalities: tuple[str, ...] = ()
    features: Path | None = None
    scene_checkpoint: Path | None = None
    act_checkpoint: Path | None = None
    scene_threshold: float = 0.5
    n_scenes: int | None = None
    debug: bool = False

    def output(self, movie_id: str) -> Path:
        return self.out / (f"{movie_id}.json" if self.command == "segment" else movie_id)


class MovieWorker:
    """Does one movie of a catalogue at a time, with models built on the first movie and kept
    (for segment: the checkpoints too). ``frame_listener(movie_id, frames)`` hears how far
    decoding has got (a Ray run's progress bar)."""

    def __init__(self, job: CatalogueJob,
                 frame_listener: Callable[[str, int], None] | None = None):
        self.job = job
        self.pool = ExtractorPool(job.cfg, job.default_modalities)
        self.frame_listener = frame_listener
        self.state: dict = {}         # what a unit keeps across movies (segment: checkpoints)

    def run(self, inp, attempt: int = 1) -> dict:
        """The outcome of one movie (:func:`outcome`)."""
        movie_id, t0 = movie_id_of(inp), time.perf_counter()
        started = _now()
        if self.frame_listener is not None:
            self.pool.frame_listener = lambda n: self.frame_listener(movie_id, n)
        try:
            manifest, cached = self.job.unit(self, inp)
        except WeightsNotFoundError as e:              # no movie can be done: the run stops
            return outcome(inp, "fatal", str(e), attempt=attempt, started=started, t0=t0)
        except BusyError as e:
            return outcome(inp, "busy", str(e), attempt=attempt, started=started, t0=t0)
        except (MegaPipeError, ExtractorError) as e:   # the input's fault: the same every time
            return outcome(inp, "failed", str(e), attempt=attempt, started=started, t0=t0)
        except Exception as e:                         # unexpected: worth another try
            if self.job.debug:
                log.error("%s", traceback.format_exc())
            return outcome(inp, "error", f"{inp.source}: {type(e).__name__}: {e}",
                           attempt=attempt, started=started, t0=t0)
        timeline = manifest.get("timeline", {})
        return outcome(inp, "cached" if cached else "done", None, attempt=attempt,
                       started=started, t0=t0, output=str(self.job.output(movie_id)),
                       frames=0 if cached else int(timeline.get("frames", 0)),
                       duration_s=float(timeline.get("duration_s", 0.0)),
                       model_set=manifest.get("config", {}).get("model_set"),
                       manifest=manifest)


def outcome(inp, status: str, error: str | None, *, attempt: int, started: str, t0: float,
            output: str | None = None, frames: int = 0, duration_s: float = 0.0,
            model_set: str | None = None, manifest: dict | None = None) -> dict:
    """One movie's result: a row of the summary (plus, for the driver, ``manifest``)."""
    return {"movie_id": movie_id_of(inp), "source": str(inp.source), "status": status,
            "error": error, "attempts": attempt, "seconds": round(time.perf_counter() - t0, 3),
            "started": started, "finished": _now(), "frames": frames,
            "duration_s": duration_s, "output": output, "model_set": model_set,
            "worker": f"{os.uname().nodename}:{os.getpid()}", "manifest": manifest}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def settle(result: dict, inp, retries: int, queue: deque,
           on_result: Callable[[dict], None]) -> None:
    """What a driver does with a movie's outcome: record it (``on_result``) when it is final;
    run it again (back in ``queue``) after an unexpected error or a lost worker while attempts
    remain; come back to it a little later when its folder is being written by another run.
    Missing weights stop the run (no movie could be done). ``queue`` holds (movie, attempt,
    not before)."""
    status, attempt = result["status"], result["attempts"]
    if status == "fatal":
        raise WeightsNotFoundError(result["error"])
    if status == "busy":
        log.info("%s: being written by another run; coming back to it", result["movie_id"])
        queue.append((inp, attempt, time.monotonic() + BUSY_RETRY_S))
    elif status in ("error", "lost") and attempt <= retries:
        log.warning("%s (attempt %d; trying again)", result["error"], attempt)
        queue.append((inp, attempt + 1, 0.0))
    elif status in ("error", "lost"):      # retries used up: a failure, attempts counted
        on_result({**result, "status": "failed",
                   "error": f"{result['error']} (after {attempt} attempts)"})
    else:
        on_result(result)


# --- Running in this process -------------------------------------------------------------------


def run_local(job: CatalogueJob, inputs: Sequence, retries: int,
              on_result: Callable[[dict], None]) -> None:
    """The catalogue in this process, one movie after the other with one set of models."""
    worker = MovieWorker(job)
    queue = deque((inp, 1, 0.0) for inp in inputs)    # (movie, attempt, not before)
    while queue:
        inp, attempt, not_before = queue.popleft()
        time.sleep(max(0.0, not_before - time.monotonic()))
        settle(worker.run(inp, attempt), inp, retries, queue, on_result)


def run_catalogue(job: CatalogueJob, inputs: Sequence, *, remote: Callable | None = None,
                  retries: int = 2, summary: Path | None = None, progress: bool = True,
                  meta: dict | None = None, on_result: Callable[[dict], None] = lambda r: None,
                  ) -> tuple[list[dict], Path]:
    """Run a catalogue here, or with ``remote(job, inputs, retries=, on_result=, on_tick=)``
    (``ray_run.run_on_ray`` with its address bound), with one overall progress bar (movies
    done, cached, failed and running; frames per second across the workers), then write its
    summary (``summary``, default :func:`summary_path`; ``meta`` joins its metadata) — also when
    the run is interrupted, with the movies not finished marked ``not run``. Returns the
    outcomes in input order and the summary's path."""
    from tqdm import tqdm

    if retries < 0:
        raise MegaPipeError(f"--retries must be at least 0, got {retries}")
    check_output_dir(job.out, "--out")
    check_ids(inputs)
    path = Path(summary) if summary is not None else summary_path(job.out)
    check_output_file(path, "--summary", (".parquet",))
    results: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(inputs), desc=job.command, unit="movie", file=sys.stderr,
               disable=not progress or None, dynamic_ncols=True)

    def heard(result: dict) -> None:
        results.append(result)
        if result["status"] == "failed":
            log.error("%s", result["error"])
        bar.update(1)
        bar.set_postfix_str(counts(results))
        on_result(result)

    def tick(running: int, frames: int) -> None:
        fps = frames / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{counts(results)}, {running} running, {fps:.0f} frames/s")

    try:
        if remote is not None:
            remote(job, inputs, retries=retries, on_result=heard, on_tick=tick)
        else:
            run_local(job, inputs, retries, heard)
    finally:
        bar.close()
        seen = {r["movie_id"] for r in results}
        rest = [outcome(inp, "not run", "the run stopped before this movie was done",
                        attempt=0, started="", t0=time.perf_counter())
                for inp in inputs if movie_id_of(inp) not in seen]
        order = {movie_id_of(inp): i for i, inp in enumerate(inputs)}
        table = sorted(results + rest, key=lambda r: order[r["movie_id"]])
        write_summary(path, table, {"command": job.command, "retries": retries,
                                    "out": str(job.out), "seconds": time.perf_counter() - t0,
                                    **(meta or {})})
    return table, path


# --- The summary -------------------------------------------------------------------------------


SUMMARY_COLUMNS = ("movie_id", "source", "status", "error", "attempts", "seconds", "started",
                   "finished", "frames", "duration_s", "output", "model_set", "worker")


def summary_path(root: Path) -> Path:
    """A new file for this run's summary: ``<root>/_catalogue/<UTC time>-<pid>.parquet``."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path(root) / "_catalogue" / f"{stamp}-{os.getpid()}.parquet"


def write_summary(path: Path, results: Sequence[dict], meta: dict) -> Path:
    """The catalogue summary (one row per movie, :data:`SUMMARY_COLUMNS`; ``meta`` in the
    schema's metadata as JSON), written atomically."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"attempts": pa.int32(), "seconds": pa.float64(), "frames": pa.int64(),
             "duration_s": pa.float64()}
    table = pa.table({c: pa.array([r.get(c) for r in results], types.get(c, pa.string()))
                      for c in SUMMARY_COLUMNS})
    table = table.replace_schema_metadata({"mega_pipe_catalogue": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def counts(results: Sequence[dict]) -> str:
    """"3 done, 1 cached, 1 failed"."""
    c = Counter(r["status"] for r in results)
    return ", ".join(f"{c[k]} {k}" for k in ("done", "cached", "failed", "not run")
                     if c[k]) or "nothing yet"
