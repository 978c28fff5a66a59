"""The single decode pass: every frame to the shot detector and the per-second sampler, whose
samples (frames, 16-frame clips) and the 10 s audio windows are encoded in batches while
decoding goes on (docs/decoding.md).

The models are built on the encode thread while FFmpeg starts (library imports and model
construction take seconds); samples collect in :class:`BatchEncoder` until the models exist.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..manifests.errors import MegaPipeError
from .decode import MovieDecoder, downscale
from .inputs import ExtractConfig
from .models import ExtractorPool
from .probe import ProbeInfo
from .sampling import AudioWindower, SecondSampler
from .shots import Shot, ShotDetector

log = logging.getLogger(__name__)


class BatchEncoder:
    """Collects inputs of one kind and encodes them in batches with every extractor that uses
    them.

    Encoding runs on a worker thread so that decoding, shot detection and sampling go on
    meanwhile (PyTorch and FFmpeg release the GIL); at most ``max_pending`` batches wait, which
    bounds memory when the models are slower than the decoder. ``models`` is a future of the
    extractors (built on that thread while decoding starts): inputs collect until it is done,
    then go out in the extractors' own batch size; a failed build raises at the next input."""

    def __init__(self, modalities: Sequence[str], models: Future, worker: ThreadPoolExecutor,
                 timings: dict | None = None, max_pending: int = 3):
        self.modalities = list(modalities)
        self.models = models
        self.size: int | None = None      # the batch size, known once the models are built
        self.timings = {} if timings is None else timings   # modality -> seconds encoding
        self.cpu: dict[str, float] = {}                       # modality -> CPU seconds encoding
        self.batches: dict[str, int] = {}
        self.worker = worker
        self._slots = threading.BoundedSemaphore(max_pending)
        self._inputs: list = []
        self._spans: list[tuple[float, float]] = []
        self._submitted_spans: list[tuple[float, float]] = []
        self._futures: list[Future] = []

    @property
    def submitted(self) -> int:
        """Batches handed to the worker so far."""
        return len(self._futures)

    def add(self, t_start: float, t_end: float, x) -> None:
        self._inputs.append(x)
        self._spans.append((t_start, t_end))
        if self.size is None and self.models.done():
            self._set_size()
        if self.size is not None and len(self._inputs) >= self.size:
            self.flush(final=False)

    def _set_size(self) -> None:
        models = self.models.result()     # re-raises a failed build
        self.size = max(1, min(models[m].batch_size for m in self.modalities))

    def flush(self, final: bool = True) -> None:
        """Submit the collected inputs in batches of ``size``; the last, shorter batch only when
        ``final``. So every batch holds the same inputs whenever the models finish building:
        batch composition changes a model's float rounding (by ~1e-7 for the ViT and the 3-D
        CNN), and features must not depend on timing (docs/decoding.md)."""
        if not self._inputs:
            return
        if self.size is None:
            self._set_size()
        for f in self._futures[-4:]:     # fail fast: stop decoding once an encode has failed
            if f.done() and f.exception():
                raise f.exception()
        n = len(self._inputs) if final else len(self._inputs) - len(self._inputs) % self.size
        for i in range(0, n, self.size):
            self._slots.acquire()
            self._futures.append(self.worker.submit(self._run, _stack(self._inputs[i:i + self.size])))
        self._submitted_spans += self._spans[:n]
        self._inputs, self._spans = self._inputs[n:], self._spans[n:]

    def _run(self, batch) -> dict[str, np.ndarray]:
        try:
            return self.encode(batch)
        finally:
            self._slots.release()

    def encode(self, batch) -> dict[str, np.ndarray]:
        """One batch through every extractor (on the worker thread): modality -> vectors."""
        out = {}
        models = self.models.result()
        for m in self.modalities:
            t0, c0 = time.perf_counter(), time.thread_time()
            out[m] = np.asarray(models[m].encode(batch), np.float32)
            self.timings[m] = self.timings.get(m, 0.0) + time.perf_counter() - t0
            self.cpu[m] = self.cpu.get(m, 0.0) + time.thread_time() - c0
            self.batches[m] = self.batches.get(m, 0) + 1
        return out

    def results(self, end_time: float) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """modality -> (t_start, t_end clipped to ``end_time``, vectors) of every input."""
        self.flush()
        done = [f.result() for f in self._futures]     # re-raises an encoding error
        spans = np.asarray(self._submitted_spans, np.float64).reshape(-1, 2)
        out = {}
        for m in self.modalities:
            vecs = (np.concatenate([d[m] for d in done]) if done
                    else np.zeros((0, self.models.result()[m].dim), np.float32))
            out[m] = (spans[:, 0], np.minimum(spans[:, 1], end_time), vecs)
        return out


def _stack(inputs: list):
    """One batch array from a list of inputs (clips, as lists of frames, in one copy)."""
    first = inputs[0]
    if isinstance(first, str):
        return inputs
    if isinstance(first, list):
        batch = np.stack([f for clip in inputs for f in clip])
        return batch.reshape(len(inputs), len(first), *batch.shape[1:])
    return np.stack(inputs)


@dataclass
class PassResult:
    shots: list[Shot]            # empty when detection was not asked for
    end_time: float              # the decoded timeline's end (s)
    n_frames: int
    samples: dict[str, tuple]    # modality -> (t_start, t_end, vectors)
    stats: dict                  # the manifest's stages.decode


@dataclass(frozen=True)
class _Layout:
    """Which decoded outputs the pass produces, and at what sizes."""

    frame: list[str]
    clip: list[str]
    audio: list[str]
    clip_len: int
    clip_factor: int     # clips (and, when equal, shot detection) use frames shrunk this much


def _layout(pool: ExtractorPool, mods: Sequence[str]) -> _Layout:
    by = {kind: [m for m in mods if pool.sampling(m) == kind] for kind in ("frame", "clip", "audio")}
    for m in by["frame"] + by["clip"]:
        if pool.entries[m].input_size > pool.frame_size:
            raise MegaPipeError(f"{m} needs frames of at least {pool.entries[m].input_size} px "
                                f"(--frame-size is {pool.frame_size})")
    clip_input = max((pool.entries[m].input_size for m in by["clip"]), default=0)
    return _Layout(by["frame"], by["clip"], by["audio"],
                   clip_len=max((pool.entries[m].clip_len for m in by["clip"]), default=0),
                   clip_factor=max(1, pool.frame_size // clip_input) if clip_input else 1)


def decode_pass(info: ProbeInfo, cfg: ExtractConfig, pool: ExtractorPool, mods: Sequence[str],
                *, detect: bool) -> PassResult:
    """Decode the movie once; detect shots (when ``detect``) and encode every frame, clip and
    audio modality of ``mods``. The timings keep model start-up apart from decoding:
    ``decode_seconds`` is the decoding loop, ``model_startup_seconds`` the build,
    ``model_wait_seconds`` how long the finished decoding still waited for it."""
    lay = _layout(pool, mods)
    timings: dict[str, float] = {}
    startup: dict[str, float] = {}
    sampler = (SecondSampler(lay.clip_len, float(info.video.frame_rate))
               if lay.frame or lay.clip else None)
    t0, cpu0 = time.perf_counter(), time.process_time()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
    with worker, MovieDecoder(info, pool.frame_size, audio=bool(lay.audio),
                              queue_frames=QUEUE_FRAMES) as dec, \
            _progress(info, cfg.progress) as bar:
        # FFmpeg is decoding from here on; the models are built on the encode thread meanwhile.
        models = worker.submit(_build_models, pool, mods, startup)
        enc = {kind: BatchEncoder(ms, models, worker, timings)
               for kind, ms in (("frame", lay.frame), ("clip", lay.clip), ("audio", lay.audio))
               if ms}
        detector = ShotDetector(cfg.detector, info.video.frame_rate) if detect else None
        reuse = detector is not None and detector.factor(dec.width) == lay.clip_factor
        windower = None
        listener = pool.frame_listener
        lap = _Laps()
        for frame in dec.frames():
            lap("frames")                    # waiting for FFmpeg + the frame's PTS
            small = downscale(frame.image, lay.clip_factor)
            lap("downscale")
            if detector:
                detector.push(frame.index, frame.t, small if reuse else frame.image)
                lap("shots")
            if sampler:
                _add_samples(sampler.push(frame, small), enc)
                lap("sampling")
            if "audio" in enc and frame.index % AUDIO_EVERY == 0:
                windower = windower or AudioWindower(dec.audio_offset())
                _add_audio(windower, dec.take_audio(), enc["audio"])
                lap("audio_windows")
            bar.update(1)
            if listener is not None and frame.index % REPORT_FRAMES == 0:
                listener(frame.index)
        lap("frames")
        end_time, n_frames = dec.end_time, dec.n_frames
        decode_seconds = time.perf_counter() - t0
        wait([models])
        waited = time.perf_counter() - t0 - decode_seconds
        lap("model_wait")
        if sampler:
            _add_samples(sampler.finish(end_time), enc)
        if "audio" in enc:
            _add_audio(windower or AudioWindower(dec.audio_offset()), dec.take_audio(),
                       enc["audio"], end_time)
        lap("sampling")
        samples = {m: v for e in enc.values() for m, v in e.results(end_time).items()}
        lap("encode_wait")
    startup_s = startup.get("seconds", 0.0)
    log.info(f"decoded {n_frames} frames ({end_time:.1f} s of video) in {decode_seconds:.1f} s"
             + (f"; model start-up {startup_s:.1f} s" if mods else "")
             + (f" (decoding then waited {waited:.1f} s for it)" if waited >= 0.05 else ""))
    return PassResult(
        shots=detector.finish(end_time) if detector else [], end_time=end_time, n_frames=n_frames,
        samples=samples,
        stats={"seconds": time.perf_counter() - t0, "decode_seconds": decode_seconds,
               "model_startup_seconds": startup_s, "model_wait_seconds": waited,
               "frames": n_frames, "duration_s": end_time, "encode_seconds": timings,
               "frame_size": pool.frame_size, "warnings": dec.warnings(),
               "account": _account(lap, dec, enc, startup, cpu0)})


class _Laps:
    """Wall and CPU seconds of the main thread's stages: each call charges the time since the
    previous call to ``stage`` (two clock reads per stage and frame, ~1 µs)."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._w, self._c = time.perf_counter(), time.thread_time()

    def __call__(self, stage: str) -> None:
        w, c = time.perf_counter(), time.thread_time()
        self.wall[stage] = self.wall.get(stage, 0.0) + w - self._w
        self.cpu[stage] = self.cpu.get(stage, 0.0) + c - self._c
        self._w, self._c = w, c


def _account(lap: _Laps, dec: MovieDecoder, enc: dict, startup: dict, cpu0: float) -> dict:
    """Where the pass's time went (docs/decoding.md): per stage, wall seconds on the thread that
    runs it and CPU seconds; FFmpeg's CPU from ``getrusage``; ``process_cpu`` is every thread of
    this process during the pass."""
    r = lambda x: round(x, 3)  # noqa: E731
    out = {"main": {k: {"wall": r(lap.wall[k]), "cpu": r(lap.cpu[k])} for k in lap.wall},
           "threads": {k: r(v) for k, v in dec.account.items()},
           "encode": {}, "process_cpu": r(time.process_time() - cpu0),
           "model_startup": {"wall": r(startup.get("seconds", 0.0)),
                             "cpu": r(startup.get("cpu", 0.0))}}
    for e in enc.values():
        for m in e.modalities:
            out["encode"][m] = {"wall": r(e.timings.get(m, 0.0)), "cpu": r(e.cpu.get(m, 0.0)),
                                "batches": e.batches.get(m, 0)}
    return out


def _add_samples(samples, enc: dict[str, BatchEncoder]) -> None:
    for s in samples:
        if "frame" in enc:
            enc["frame"].add(s.t_start, s.t_end, s.image)
        if "clip" in enc:
            enc["clip"].add(s.t_start, s.t_end, s.clip)


def _add_audio(windower: AudioWindower, audio, enc: BatchEncoder, end_time=None) -> None:
    windower.feed(audio)
    for w in windower.windows(end_time):
        enc.add(w.t_start, w.t_end, w.samples)


def _progress(info: ProbeInfo, enabled: bool):
    from tqdm import tqdm

    total = info.video.frames or (int(info.duration_s * info.video.frame_rate)
                                  if info.duration_s else None)
    return tqdm(total=total, desc=Path(info.path).name, unit="frame",
                disable=not enabled or None, leave=False, dynamic_ncols=True)


# Measured on 2 cores, 10-minute 1080p movie (docs/decoding.md, "Where the time goes"): the
# encode thread runs at nice +10 once the models are built, so that it fills the cores' idle
# time instead of taking them from FFmpeg's decoder threads (the critical path), and the frame
# queue holds 192 frames (~0.7 s of decoding, 67 MB at 456x256) so that the main thread's
# hiccups do not stall FFmpeg: 65.3-67.5 s -> 59.9-60.9 s (decode-only 47.1-50.3 s).
ENCODE_NICE = 10
QUEUE_FRAMES = 192
# The audio decoded so far is taken every this many frames (the windower appends it to its
# buffer of up to 10 s: once a frame, that copy was most of the audio windows' cost).
AUDIO_EVERY = 16
# A catalogue run's workers say how far they are every this many frames (ExtractorPool's
# frame_listener; ~10 s of 24 fps video).
REPORT_FRAMES = 240


def _lower_priority(nice: int) -> None:
    """Lower the calling thread's scheduling priority by ``nice`` (Linux: per thread)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:
        pass


def _build_models(pool: ExtractorPool, mods: Sequence[str], clock: dict) -> dict:
    """Build the extractors (on the encode thread, which is where they run); the time it takes
    goes to ``clock["seconds"]``.

    FFmpeg's decoder threads already use the cores: oversubscribing them with PyTorch's intra-op
    threads slows both down badly (docs/decoding.md), so the encode thread gets half of them.
    (The setting is per thread: the caller's own torch threads are untouched.) Once built, the
    thread lowers its priority (``ENCODE_NICE``; per thread on Linux, so only the encoding)."""
    if not mods:
        return {}
    t0 = time.perf_counter()
    c0 = time.thread_time()
    try:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        models = pool.get(mods)
        # The build itself keeps the normal priority (niced, it took longer and the samples
        # waiting for it used more memory, for no gain: measured).
        _lower_priority(ENCODE_NICE)
        return models
    finally:
        clock["seconds"] = time.perf_counter() - t0
        clock["cpu"] = time.thread_time() - c0
