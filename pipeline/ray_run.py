"""Catalogue runs on Ray (``extract --ray``, ``segment --ray``; docs/scale-out.md).

The shape, chosen by measurement (docs/scale-out.md, "Why actors"): a pool of Ray **actors**, one
per movie slot that the cluster's resources allow, each declaring the CPUs a movie's decode needs
(``--ray-cpus``, default 1) and, where the cluster has GPUs, a fraction of one for the encoders
(``--ray-gpus``). Each actor is a :class:`catalogue.MovieWorker`: it builds the models once and
keeps them for every movie it is given, so model start-up is paid once per worker, not per movie;
a movie is one call, and its single decode pass stays inside it. The driver hands a movie to
whichever actor is free (the long movies do not wait behind each other in fixed shards).

Failures: an actor process that dies (SIGKILL, out of memory, a lost node) is restarted by Ray
(``max_restarts=-1``); the call it was running fails on the driver, which counts the attempt and
hands the movie out again, up to ``--retries`` times. The restarted actor gets no movie before it
answers a ping: a call sent while it is still restarting fails at once (``ActorUnavailableError``)
and would burn an attempt without running anything. The movie's half-written folder is the
hidden ``.<id>.partial`` (``write.write_movie_folder``), removed when it is next written, and
its lock is released by the kernel with the dead process; the FFmpeg child dies with the pipe it
was writing into.

Loopback: on one machine Ray is kept on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
before Ray is imported: otherwise Ray swaps 127.0.0.1 for the host's outbound address).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections import deque
from typing import Callable, Sequence

from ..manifests.errors import MegaPipeError
from .catalogue import CatalogueJob, MovieWorker, outcome, settle
from .inputs import movie_id_of

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
# What a GPU is shared by when --ray-gpus is not given: four movies' encoders per GPU.
DEFAULT_GPU_FRACTION = 0.25
# A lost actor is pinged every RECOVERY_PING_S while Ray restarts it, and given up after
# RECOVERY_TIMEOUT_S (its models are built again on restart: minutes with the paper's weights).
RECOVERY_PING_S = 0.5
RECOVERY_TIMEOUT_S = 900.0
# Object store of a Ray instance that `--ray auto` starts (bytes): outcomes are small JSON.
LOCAL_OBJECT_STORE = 200_000_000


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` ("auto": the local one if it runs, else start one on
    this machine); returns True when this process started it (and must stop it)."""
    host = address.rsplit(":", 1)[0].removeprefix("ray://")
    if address == "auto" or host in LOOPBACK_HOSTS:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
            return False
        except ConnectionError:
            # With its dashboard (on 127.0.0.1): Ray Train's placement-group cleaner polls the
            # state API it serves, and warns every few seconds without it.
            ray.init(include_dashboard=True, _node_ip_address="127.0.0.1",
                     object_store_memory=LOCAL_OBJECT_STORE, **quiet)
            log.info("started a local Ray instance (%d CPUs)", ray.cluster_resources()["CPU"])
            return True
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise MegaPipeError(f"--ray {address}: cannot join the Ray cluster there "
                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return False


def slots(resources: dict, cpus: float, gpus: float, n_movies: int) -> int:
    """How many movies run at once: what the cluster's CPUs (and GPUs) allow, at most one per
    movie."""
    n = math.floor(resources.get("CPU", 0) / cpus)
    if gpus:
        n = min(n, math.floor(resources.get("GPU", 0) / gpus))
    if n < 1:
        raise MegaPipeError(f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and "
                            f"{resources.get('GPU', 0):g} GPUs: not enough for one movie "
                            f"(--ray-cpus {cpus:g}, --ray-gpus {gpus:g})")
    return min(n, n_movies)


def gpu_share(resources: dict, device: str, asked: float | None) -> float:
    """The GPU fraction a movie asks for: ``--ray-gpus``, else a quarter of one where the
    cluster has GPUs and the run may use them (``--device`` not cpu), else none."""
    if asked is not None:
        if asked < 0 or asked > 1:
            raise MegaPipeError(f"--ray-gpus must be between 0 and 1, got {asked:g}")
        if asked and not resources.get("GPU"):
            raise MegaPipeError(f"--ray-gpus {asked:g}: the Ray cluster has no GPU")
        return asked
    return DEFAULT_GPU_FRACTION if resources.get("GPU") and device != "cpu" else 0.0


def worker_logging(debug: bool) -> None:
    """In a Ray worker process: mega-pipe's log messages to stderr, which Ray forwards to the
    driver's stderr (INFO and up; DEBUG with ``--debug``)."""
    root = logging.getLogger("mega_pipe")
    if not any(getattr(h, "mega_pipe_worker", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.mega_pipe_worker = True
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


class _Progress:
    """Frames decoded so far by each running movie (an actor; workers tell it, the driver
    asks)."""

    def __init__(self):
        self.frames: dict[str, int] = {}

    def heard(self, movie_id: str, frames: int) -> None:
        self.frames[movie_id] = frames

    def forget(self, movie_id: str) -> None:
        self.frames.pop(movie_id, None)

    def running_frames(self) -> int:
        return sum(self.frames.values())


class _Worker:
    """One movie slot (an actor): a :class:`MovieWorker` whose models live as long as it does."""

    def __init__(self, job: CatalogueJob, progress: str):
        import ray

        worker_logging(job.debug)
        self.progress = ray.get_actor(progress)    # by name: a restarted actor finds it again
        self.worker = MovieWorker(job, frame_listener=self._heard)

    def _heard(self, movie_id: str, frames: int) -> None:
        self.progress.heard.remote(movie_id, frames)

    def run(self, inp, attempt: int) -> dict:
        return self.worker.run(inp, attempt)

    def ready(self) -> bool:
        """The ping a restarted actor must answer before it gets a movie (its models are built)."""
        return True


def run_on_ray(job: CatalogueJob, inputs: Sequence, *, address: str, cpus: float = 1.0,
               gpus: float | None = None, retries: int = 2,
               on_result: Callable[[dict], None] = lambda r: None,
               on_tick: Callable[[int, int], None] = lambda running, frames: None) -> list[dict]:
    """Run the catalogue on Ray; returns the final outcome of every movie (in the order they
    finished). ``on_result`` hears each final outcome, ``on_tick(running, frames)`` the number
    of movies running and the frames decoded across the cluster, about twice a second. What Ray
    prints while it runs goes to stderr (stdout is for results)."""
    with contextlib.redirect_stdout(sys.stderr):
        return _run_on_ray(job, inputs, address, cpus, gpus, retries, on_result, on_tick)


def _outcome_of(ref, inp, attempt: int, t0: float) -> dict:
    """A finished call's outcome; a call that raised becomes one too: our own code's exception
    (a bug: "error", worth a retry) or a lost worker process or node ("lost")."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    try:
        return ray.get(ref)
    except RayTaskError as e:
        return outcome(inp, "error", f"{inp.source}: {e.cause!r}", attempt=attempt, started="",
                       t0=t0)
    except RayError as e:
        return outcome(inp, "lost", f"{inp.source}: the worker running it was lost "
                       f"({type(e).__name__})", attempt=attempt, started="", t0=t0)


class _LostActors:
    """Actors Ray is restarting: each is pinged (``ready``) and gets a movie again only once it
    answers; one that has not answered within ``RECOVERY_TIMEOUT_S`` is given up (a ping to an
    actor Ray cannot place anywhere may never return)."""

    def __init__(self) -> None:
        self.pings: dict = {}                      # ping -> (actor, since when it is lost)

    def add(self, actor, lost_since: float | None = None) -> None:
        self.pings[actor.ready.remote()] = (actor, time.monotonic() if lost_since is None else lost_since)

    def answered(self, ping, idle: deque) -> None:
        """A ping came back: the actor is idle again, or (still restarting) pinged again shortly."""
        import ray
        from ray.exceptions import RayError

        actor, lost_since = self.pings.pop(ping)
        try:
            ray.get(ping)
        except RayError:
            time.sleep(RECOVERY_PING_S)
            self.add(actor, lost_since)
            return
        idle.append(actor)

    def give_up_late(self) -> None:
        now = time.monotonic()
        for ping, (_, lost_since) in list(self.pings.items()):
            if now - lost_since > RECOVERY_TIMEOUT_S:
                del self.pings[ping]
                log.warning("a Ray worker did not come back within %g s; going on without it", RECOVERY_TIMEOUT_S)


def _hand_out(queue: deque, idle: deque, running: dict) -> None:
    """Give each idle actor the next movie that is due (a movie coming back later stays queued)."""
    now = time.monotonic()
    for _ in range(len(queue)):
        if not idle:
            break
        inp, attempt, not_before = queue.popleft()
        if not_before > now:
            queue.append((inp, attempt, not_before))
            continue
        a = idle.popleft()
        running[a.run.remote(inp, attempt)] = (a, inp, attempt, time.perf_counter())


def _no_worker_left(queue: deque, heard: Callable[[dict], None]) -> None:
    """Every worker was given up: the movies still waiting are recorded as failed."""
    while queue:
        inp, attempt, _ = queue.popleft()
        heard(outcome(inp, "failed", f"{inp.source}: no Ray worker left to run it (none came back within "
                      f"{RECOVERY_TIMEOUT_S:g} s of being lost)", attempt=attempt - 1, started="",
                      t0=time.perf_counter()))


def _run_on_ray(job: CatalogueJob, inputs: Sequence, address: str, cpus: float,
                gpus: float | None, retries: int, on_result: Callable[[dict], None],
                on_tick: Callable[[int, int], None]) -> list[dict]:
    started = connect(address)
    import ray

    handles: list = []      # every actor of this run, killed at the end
    try:
        resources = ray.cluster_resources()
        gpus = gpu_share(resources, job.cfg.device, gpus)
        n = slots(resources, cpus, gpus, len(inputs))
        log.info("Ray: %d movie slot(s) of %g CPU%s%s on %d node(s)", n, cpus,
                 "s" if cpus != 1 else "", f" + {gpus:g} GPU" if gpus else "",
                 len([x for x in ray.nodes() if x["Alive"]]))
        name = f"mega-pipe-progress-{os.getpid()}-{time.time_ns()}"
        progress = ray.remote(num_cpus=0)(_Progress).options(name=name).remote()
        handles.append(progress)
        actor = ray.remote(_Worker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=-1,
                                            max_task_retries=0)
        handles += [actor.remote(job, name) for _ in range(n)]
        idle = deque(handles[1:])
        queue = deque((inp, 1, 0.0) for inp in inputs)     # (movie, attempt, not before)
        running: dict = {}                                  # call -> (actor, movie, attempt, t0)
        lost = _LostActors()
        results: list[dict] = []

        def heard(result: dict) -> None:
            results.append(result)
            on_result(result)

        while queue or running:
            _hand_out(queue, idle, running)
            lost.give_up_late()
            if queue and not (idle or running or lost.pings):
                _no_worker_left(queue, heard)
                break
            waiting = [*running, *lost.pings]
            ready = ray.wait(waiting, num_returns=1, timeout=0.5)[0] if waiting else []
            if not waiting:
                time.sleep(0.2)
            for ref in ready:
                if ref in lost.pings:
                    lost.answered(ref, idle)
                    continue
                a, inp, attempt, t0 = running.pop(ref)
                progress.forget.remote(movie_id_of(inp))
                result = _outcome_of(ref, inp, attempt, t0)
                if result["status"] == "lost":          # restarting: a movie once it answers
                    lost.add(a)
                else:
                    idle.append(a)
                settle(result, inp, retries, queue, heard)
            on_tick(len(running), sum(r["frames"] for r in results)
                    + ray.get(progress.running_frames.remote()))
        return results
    finally:
        for a in handles:
            ray.kill(a)
        if started:
            ray.shutdown()
