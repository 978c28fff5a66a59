"""``mega-pipe extract``: one movie in, one feature folder out (docs/contract.md).

The stages, in order:

1. probe the file (streams, exact rates, rotation);
2. decide per stage whether its cached output is still valid (cache keys, ``cache.py``);
3. if shots or any frame/clip/audio modality must be computed: **one decode pass**
   (``decode.py``): every frame goes to the shot detector and the per-second sampler, whose
   samples (frames, 16-frame clips) are encoded in batches by the image/action extractors while
   decoding continues; the audio, decoded in the same FFmpeg process, is cut into 10 s windows
   and encoded as it arrives;
4. subtitle cues and synopsis sentences are embedded with the sentence encoder;
5. pooling: each shot gets the mean of the samples overlapping it (``pooling.py``);
6. ``manifest.json`` is written last; a folder without it is incomplete.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from mega_pipe.manifests import features as contract
from mega_pipe.manifests.atomic import exclusive_lock, write_json
from mega_pipe.manifests.errors import InputError, MegaPipeError
from mega_pipe.manifests.provenance import code_version
from mega_pipe.model.device import resolve_device

from .cache import bytes_fingerprint, cached_key, file_fingerprint, stage_key
from .decode import MovieDecoder, downscale
from .pooling import pool
from .probe import ProbeInfo, probe
from .sampling import AudioWindower, SecondSampler
from .shots import DetectorConfig, Shot, ShotDetector

VISUAL_SAMPLINGS = ("frame", "clip")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractConfig:
    model_set: str = "paper"
    modalities: tuple[str, ...] | None = None   # None: every modality the movie has
    device: str = "auto"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    frame_size: int | None = None               # short side of the decoded frames; None: auto
    weights_dirs: tuple[Path, ...] = ()
    offline: bool = False
    allow_download: bool = False
    progress: bool = True
    audio_track: str | None = None     # --audio-track: a number among the audio streams or a
    subtitle_track: str | None = None  # language tag; likewise --subtitle-track. None: automatic
    strict: bool = False               # warnings fail the movie (not recorded: changes no output)

    def to_json(self) -> dict:
        return {"model_set": self.model_set, "modalities": list(self.modalities or []) or None,
                "device": self.device, "detector": self.detector.to_json(),
                "frame_size": self.frame_size, "offline": self.offline,
                "audio_track": self.audio_track, "subtitle_track": self.subtitle_track}


@dataclass(frozen=True)
class MovieInput:
    video: Path
    subtitles: Path | None = None
    synopsis: Path | None = None
    movie_id: str | None = None
    synopsis_lines: bool = False     # the synopsis file has one sentence per line


class ExtractorPool:
    """Builds extractors on first need and keeps them for the whole run (several movies).

    Planning a run (entries, samplings, weights lookup) needs no deep-learning library; torch and
    the model libraries are imported only when :meth:`get` builds a model, so decoding can start
    first (docs/decoding.md)."""

    def __init__(self, cfg: ExtractConfig):
        from mega_pipe.extractors.registry import MODALITIES, REGISTRY

        self.cfg = cfg
        # An explicit --device cuda is checked now (one clear error before any work); "auto" is
        # resolved when the first model is built.
        self._device = None if cfg.device == "auto" else resolve_device(cfg.device)
        self.entries = {e.modality: e for e in REGISTRY.values() if e.model_set == cfg.model_set}
        if not self.entries:
            raise MegaPipeError(f"unknown model set {cfg.model_set!r}")
        requested = cfg.modalities or MODALITIES
        unknown = [m for m in requested if m not in self.entries]
        if unknown:
            raise MegaPipeError(f"unknown modality {', '.join(unknown)} "
                                f"(available: {', '.join(self.entries)})")
        self.modalities = tuple(requested)
        # The working resolution depends on the model set, not on the modality subset, so that
        # adding or dropping a modality never invalidates the cached features of the others.
        self.frame_size = cfg.frame_size or max(
            (e.input_size for e in self.entries.values()), default=224)
        self._built: dict = {}

    def check(self, modalities: Sequence[str]) -> None:
        """Fail now (WeightsNotFoundError listing every searched path) if weights are missing."""
        from mega_pipe.extractors.registry import locate_weights

        locate_weights(self.cfg.model_set, [m for m in modalities if m not in self._built],
                       weights_dirs=self.cfg.weights_dirs, offline=self.cfg.offline,
                       allow_download=self.cfg.allow_download)

    def get(self, modalities: Sequence[str]) -> dict:
        from mega_pipe.extractors.registry import build_extractors

        missing = [m for m in modalities if m not in self._built]
        if missing:
            self._device = self._device or resolve_device(self.cfg.device)
            self._built.update(build_extractors(
                self.cfg.model_set, missing, device=self._device,
                weights_dirs=self.cfg.weights_dirs, offline=self.cfg.offline,
                allow_download=self.cfg.allow_download))
        return {m: self._built[m] for m in modalities}

    def meta(self, m: str) -> dict:
        """Provenance of modality ``m``: the digest of the weights actually loaded when the
        extractor was built in this run, else the registry's published digest (the cache key
        uses the registry entry, which identifies the weights)."""
        e = self.entries[m]
        built = self._built.get(m)
        return {"dim": e.dim, "model_id": e.name,
                "weights_sha256": built.weights_sha256 if built else e.sha256,
                "sampling": self.sampling(m)}

    def sampling(self, m: str) -> str:
        """What one sample of modality ``m`` is (the modality table, through its entry)."""
        return self.entries[m].sampling.value


class _Batcher:
    """Collect inputs of one kind and encode them in batches with every extractor that uses them.

    Encoding runs on a worker thread so that decoding, shot detection and sampling go on
    meanwhile (PyTorch and FFmpeg release the GIL); at most ``max_pending`` batches wait, which
    bounds memory when the models are slower than the decoder. The models are built on that
    thread while decoding starts: inputs collect until they exist (their batch size is the
    extractors' own), and a failed build stops the pass at the next input."""

    def __init__(self, modalities: Sequence[str], models: Future, timings: dict,
                 worker: ThreadPoolExecutor, max_pending: int = 3):
        self.modalities = list(modalities)
        self.models = models          # the extractors, being built on the worker thread
        self.size: int | None = None  # known once the models are built
        self.timings = timings
        self.worker = worker
        self._slots = threading.BoundedSemaphore(max_pending)
        self._inputs: list = []
        self._spans: list[tuple[float, float]] = []
        self.spans: list[tuple[float, float]] = []
        self._futures: list[Future] = []

    def add(self, t_start: float, t_end: float, x) -> None:
        self._inputs.append(x)
        self._spans.append((t_start, t_end))
        if self.size is None and self.models.done():
            self._set_size()
        if self.size is not None and len(self._inputs) >= self.size:
            self.flush()

    def _set_size(self) -> None:
        models = self.models.result()     # re-raises a failed build
        self.size = max(1, min(models[m].batch_size for m in self.modalities))

    def flush(self) -> None:
        """Submit every collected input, in batches of at most ``size``."""
        if not self._inputs:
            return
        if self.size is None:
            self._set_size()
        for f in self._futures[-4:]:     # fail fast: stop decoding once an encode has failed
            if f.done() and f.exception():
                raise f.exception()
        for i in range(0, len(self._inputs), self.size):
            self._submit(self._inputs[i:i + self.size])
        self.spans += self._spans
        self._inputs, self._spans = [], []

    def _submit(self, inputs: list) -> None:
        first = inputs[0]
        if isinstance(first, str):
            batch = inputs
        elif isinstance(first, list):    # clips as lists of frames: one copy into the batch
            batch = np.stack([f for clip in inputs for f in clip])
            batch = batch.reshape(len(inputs), len(first), *batch.shape[1:])
        else:
            batch = np.stack(inputs)
        self._slots.acquire()
        self._futures.append(self.worker.submit(self._encode, batch))

    def _encode(self, batch) -> dict[str, np.ndarray]:
        try:
            out = {}
            models = self.models.result()
            for m in self.modalities:
                t0 = time.perf_counter()
                out[m] = np.asarray(models[m].encode(batch), np.float32)
                self.timings[m] = self.timings.get(m, 0.0) + time.perf_counter() - t0
            return out
        finally:
            self._slots.release()

    def results(self, end_time: float) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        self.flush()
        done = [f.result() for f in self._futures]     # re-raises an encoding error
        spans = np.asarray(self.spans, np.float64).reshape(-1, 2)
        out = {}
        for m in self.modalities:
            vecs = (np.concatenate([d[m] for d in done]) if done
                    else np.zeros((0, self.models.result()[m].dim), np.float32))
            out[m] = (spans[:, 0], np.minimum(spans[:, 1], end_time), vecs)
        return out


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled or None, leave=False,
                dynamic_ncols=True)


def movie_id_of(inp: MovieInput) -> str:
    return inp.movie_id or Path(inp.video).stem


def extract_movie(inp: MovieInput, out_root: Path, cfg: ExtractConfig,
                  extractors: ExtractorPool) -> dict:
    """Extract one movie into ``out_root/<movie_id>/``; return its manifest (with
    ``"up_to_date": True`` added when every stage was cached and nothing was written).

    The folder is locked while it is written (``.<movie_id>.lock`` beside it): a second run on
    the same folder fails at once with one line. A new folder is built as ``.<movie_id>.partial``
    and renamed into place when complete, so a failed or killed run leaves no folder that looks
    like a movie's. An existing folder is updated in place: it loses its manifest first (reads as
    incomplete) and keeps its valid files as cache for the next run."""
    video = Path(inp.video)
    movie_id = movie_id_of(inp)
    out_root = Path(out_root)
    out = out_root / movie_id
    with exclusive_lock(out_root / f".{movie_id}.lock", str(out)):
        info = probe(video, cfg.audio_track, cfg.subtitle_track)
        if out.exists():
            return _extract(inp, info, out, movie_id, cfg, extractors)
        staging = out_root / f".{movie_id}.partial"
        shutil.rmtree(staging, ignore_errors=True)      # left by a killed run
        try:
            manifest = _extract(inp, info, staging, movie_id, cfg, extractors)
            staging.rename(out)
            return manifest
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _extract(inp: MovieInput, info: ProbeInfo, out: Path, movie_id: str, cfg: ExtractConfig,
             extractors: ExtractorPool) -> dict:
    t_run = time.perf_counter()
    video = Path(inp.video)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    stages: dict[str, dict] = {}
    fingerprint = file_fingerprint(video)
    previous = _read_manifest(out / "manifest.json")
    if previous and previous["source"]["fingerprint"] != fingerprint \
            and previous["source"]["path"] != str(video.resolve()):
        raise MegaPipeError(f"{out} holds the features of another movie "
                            f"({previous['source']['path']}): give {video} another --id or --out")

    # -- which modalities this movie has, and which must be computed -----------------------------
    # A modality the run asks for but the movie lacks stays in shots.parquet as an absent
    # (all-null) column, so every movie of one run has the same schema (docs/contract.md).
    wanted = list(extractors.modalities)
    absent: dict[str, str] = {}
    if "audio" in wanted and info.audio is None:
        wanted.remove("audio")
        absent["audio"] = "movie has no audio stream"
        warnings.append("no audio stream: audio features absent")
    elif "audio" in wanted and len(info.audio_tracks) > 1 and cfg.audio_track is None:
        warnings.append(_track_note("audio", len(info.audio_tracks), info.audio.track,
                                    info.audio.language))
    cues, cue_source = _subtitle_cues(inp, info, warnings) if "subtitle" in wanted else (None, None)
    if "subtitle" in wanted and not cues:
        wanted.remove("subtitle")
        absent["subtitle"] = "movie has no subtitles"
        if cue_source is None:
            warnings.append("no subtitles (no --subtitles file, sidecar or text stream): "
                            "subtitle features absent")
    meta = {m: extractors.meta(m) for m in extractors.modalities}
    samplings = {m: extractors.sampling(m) for m in wanted}

    keys = {}
    for m in wanted:
        entry = extractors.entries[m]   # the registry entry identifies the weights
        base = dict(contract=contract.CONTRACT_VERSION, modality=m, model=entry.name,
                    sha=entry.sha256, preprocess=entry.preprocess)
        if samplings[m] == "text":   # the cues themselves, whichever file or track they are from
            keys[m] = stage_key(**base, cues=bytes_fingerprint(
                json.dumps([[c.start_s, c.end_s, c.text] for c in cues]).encode()))
        else:
            track = {"audio_stream": info.audio.index} if samplings[m] == "audio" else {}
            keys[m] = stage_key(**base, source=fingerprint, frame_size=extractors.frame_size,
                                **track)
    shots_key = stage_key(source=fingerprint, detector=cfg.detector.to_json(),
                          frame_size=extractors.frame_size)
    todo = [m for m in wanted if cached_key(out / "samples" / f"{m}.parquet") != keys[m]]
    prev_shots = (previous or {}).get("stages", {}).get("shots", {})
    shots_cached = prev_shots.get("key") == shots_key and (out / "shots.parquet").exists()
    synopsis = _synopsis_input(inp, extractors)
    if synopsis:
        synopsis["todo"] = cached_key(out / "synopsis.parquet") != synopsis["key"]
    pool_key = stage_key(shots=shots_key, **{m: keys[m] for m in wanted},
                         synopsis=synopsis["key"] if synopsis else None,
                         **({"absent": absent} if absent else {}))
    if previous and previous.get("pool_key") == pool_key and not todo and not (
            synopsis and synopsis["todo"]):
        _check_strict(cfg, movie_id, previous.get("warnings", []))
        log.info(f"{movie_id}: up to date (all stages cached)")
        return {**previous, "up_to_date": True}

    # The folder is being changed: mark it incomplete until the new manifest is written.
    (out / "manifest.json").unlink(missing_ok=True)
    text_mods = [m for m in todo if samplings[m] == "text"] + (
        ["subtitle"] if synopsis and synopsis["todo"] and "subtitle" not in todo else [])
    extractors.check(todo + text_mods)   # missing weights: fail before any decoding
    _check_strict(cfg, movie_id, warnings)

    # -- the decode pass ---------------------------------------------------------------------------
    decode_mods = [m for m in todo if samplings[m] in VISUAL_SAMPLINGS + ("audio",)]
    fresh: dict[str, tuple] = {}
    if decode_mods or not shots_cached:
        shots, end_time, n_frames, dstats = _decode_pass(
            info, cfg, extractors, decode_mods, samplings,
            detect=not shots_cached, fresh=fresh)
        stages["decode"] = dstats
        if shots_cached:
            shots, end_time = _read_shots(out / "shots.parquet")
    else:   # nothing to decode: what the decoder reported last time still holds
        shots, end_time = _read_shots(out / "shots.parquet")
        n_frames = int(shots[-1].end_frame) if shots else 0
        stages["decode"] = {"cached": True, "warnings": previous["stages"].get(
            "decode", {}).get("warnings", [])}
    warnings += stages["decode"]["warnings"]
    warnings += _timeline_warnings(info, end_time, cues if "subtitle" in wanted else None)
    stages["shots"] = {"key": shots_key, "count": len(shots), "cached": shots_cached,
                       **cfg.detector.to_json()}

    # -- text ------------------------------------------------------------------------------------
    built = extractors.get(text_mods)
    if "subtitle" in todo:
        t0 = time.perf_counter()
        vecs = built["subtitle"].encode([c.text for c in cues]) if cues else None
        fresh["subtitle"] = (np.array([c.start_s for c in cues]), np.array([c.end_s for c in cues]),
                             np.asarray(vecs, np.float32), [c.text for c in cues])
        stages["subtitle"] = {"seconds": time.perf_counter() - t0, "samples": len(cues),
                              "source": cue_source}
    if synopsis:
        if synopsis["todo"]:
            t0 = time.perf_counter()
            vecs = built["subtitle"].encode(synopsis["sentences"])
            contract.write_synopsis(out / "synopsis.parquet", movie_id, synopsis["sentences"],
                                    np.asarray(vecs, np.float32),
                                    {**extractors.meta("subtitle"), "sampling": "sentence"},
                                    cache_key=synopsis["key"])
            stages["synopsis"] = {"seconds": time.perf_counter() - t0,
                                  "sentences": len(synopsis["sentences"])}
        else:
            stages["synopsis"] = {"cached": True, "sentences": len(synopsis["sentences"])}

    # -- samples files (new ones) and pooling ----------------------------------------------------
    for m in wanted:   # provenance: computed now -> the loaded weights; cached -> as recorded
        path = out / "samples" / f"{m}.parquet"
        meta[m] = (extractors.meta(m) if m in todo
                   else contract.read_metadata(path).get("modalities", {}).get(m, meta[m]))
    t0 = time.perf_counter()
    starts = np.array([s.start_s for s in shots])
    ends = np.array([s.end_s for s in shots])
    pooled = {}
    for m in wanted:
        path = out / "samples" / f"{m}.parquet"
        if m in fresh:
            ts, te, vecs, *texts = fresh[m]
            contract.write_samples(path, contract.samples_table(
                movie_id, m, meta[m], ts, te, vecs, texts[0] if texts else None,
                cache_key=keys[m]))
            stages.setdefault(m, {})["samples"] = len(ts)
        else:
            s = contract.read_samples(path)
            ts, te, vecs = s["t_start"], s["t_end"], s["vectors"]
            stages[m] = {"cached": True, "samples": len(ts)}
        if len(ts) == 0:
            warnings.append(f"{m}: no samples")
        pooled[m] = pool(starts, ends, ts, te, vecs)
    contract.write_shots(out / "shots.parquet", movie_id, shots, pooled, meta,
                         cache_key=pool_key, absent=absent)
    stages["pool"] = {"seconds": time.perf_counter() - t0}

    outputs = ["shots.parquet"] + [f"samples/{m}.parquet" for m in wanted]
    if synopsis:
        outputs.append("synopsis.parquet")
    _check_strict(cfg, movie_id, warnings)
    stat = video.stat()
    manifest = {
        "contract": contract.CONTRACT_VERSION,
        "movie_id": movie_id,
        "code_version": code_version(),
        "source": {"path": str(video.resolve()), "size": stat.st_size, "mtime": stat.st_mtime,
                   "fingerprint": fingerprint, "subtitles": cue_source,
                   "synopsis": str(Path(inp.synopsis).resolve()) if inp.synopsis else None},
        "probe": info.to_json(),
        "timeline": {"duration_s": end_time, "frames": n_frames},
        "config": {**cfg.to_json(), "frame_size": extractors.frame_size},
        "models": {m: meta[m] for m in wanted},
        "modalities": wanted,
        "pool_key": pool_key,
        "stages": stages,
        "seconds": time.perf_counter() - t_run,
        "outputs": outputs,
        "warnings": warnings,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _decode_pass(info: ProbeInfo, cfg: ExtractConfig, pool: ExtractorPool, mods: Sequence[str],
                 samplings: Mapping, *, detect: bool, fresh: dict) -> tuple:
    """Decode the movie once; detect shots and encode every frame/clip/audio modality.

    The models are built on the encode thread while decoding and shot detection start (model
    construction and library imports take seconds); batches queue behind the build. The timings
    keep the two apart: ``decode_seconds`` is the decoding loop, ``model_startup_seconds`` the
    build, ``model_wait_seconds`` how long the finished decoding still waited for it."""
    timings: dict[str, float] = {}
    startup: dict[str, float] = {}
    frame_size = pool.frame_size
    frame_m = [m for m in mods if samplings[m] == "frame"]
    clip_m = [m for m in mods if samplings[m] == "clip"]
    audio_m = [m for m in mods if samplings[m] == "audio"]
    for m in frame_m + clip_m:
        need = pool.entries[m].input_size
        if need > frame_size:
            raise MegaPipeError(f"{m} needs frames of at least {need} px "
                                f"(--frame-size is {frame_size})")
    clip_len = max((pool.entries[m].clip_len for m in clip_m), default=0)
    sampler = SecondSampler(clip_len, float(info.video.frame_rate)) if frame_m or clip_m else None
    # Clips are made of frames shrunk to what the clip models need (once per frame, not per
    # clip); shot detection shrinks its frames too, so it reuses them when the sizes agree.
    clip_input = max((pool.entries[m].input_size for m in clip_m), default=0)
    clip_factor = max(1, frame_size // clip_input) if clip_input else 1
    windower = None

    def take(samples) -> None:
        for s in samples:
            if frames_b:
                frames_b.add(s.t_start, s.t_end, s.image)
            if clips_b:
                clips_b.add(s.t_start, s.t_end, s.clip)

    def take_audio(end_time=None) -> None:
        windower.feed(dec.take_audio())
        for w in windower.windows(end_time):
            audio_b.add(w.t_start, w.t_end, w.samples)

    t0 = time.perf_counter()
    total = info.video.frames or (int(info.duration_s * info.video.frame_rate)
                                  if info.duration_s else None)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
    with worker, MovieDecoder(info, frame_size, audio=bool(audio_m)) as dec, \
            _progress(total, Path(info.path).name, cfg.progress) as bar:
        # FFmpeg is decoding from here on. The models, and the libraries they need (seconds of
        # imports), are built on the encode thread meanwhile; samples collect until they exist.
        models = worker.submit(_build_models, pool, mods, startup)
        frames_b = _Batcher(frame_m, models, timings, worker) if frame_m else None
        clips_b = _Batcher(clip_m, models, timings, worker) if clip_m else None
        audio_b = _Batcher(audio_m, models, timings, worker) if audio_m else None
        detector = ShotDetector(cfg.detector, info.video.frame_rate) if detect else None
        reuse = detector is not None and detector.factor(dec.width) == clip_factor
        for frame in dec.frames():
            small = downscale(frame.image, clip_factor)
            if detector:
                detector.push(frame.index, frame.t, small if reuse else frame.image)
            if sampler:
                take(sampler.push(frame, small))
            if audio_b:
                if windower is None:
                    windower = AudioWindower(dec.audio_offset())
                take_audio()
            bar.update(1)
        end_time, n_frames = dec.end_time, dec.n_frames
        decode_seconds = time.perf_counter() - t0
        wait([models])
        waited = time.perf_counter() - t0 - decode_seconds
        if sampler:
            take(sampler.finish(end_time))
        if audio_b:
            take_audio(end_time)
        for b in (frames_b, clips_b, audio_b):
            if b:
                fresh.update(b.results(end_time))
    if detector:
        shots = detector.finish(end_time)
    else:
        shots = []
    seconds = time.perf_counter() - t0
    model_startup = startup.get("seconds", 0.0)
    log.info(f"decoded {n_frames} frames ({end_time:.1f} s of video) in {decode_seconds:.1f} s"
        + (f"; model start-up {model_startup:.1f} s" if mods else "")
        + (f" (decoding then waited {waited:.1f} s for it)" if waited >= 0.05 else ""))
    return shots, end_time, n_frames, {
        "seconds": seconds, "decode_seconds": decode_seconds,
        "model_startup_seconds": model_startup, "model_wait_seconds": waited,
        "frames": n_frames, "duration_s": end_time,
        "encode_seconds": timings, "frame_size": frame_size, "warnings": dec.warnings()}


def _build_models(pool: ExtractorPool, mods: Sequence[str], clock: dict) -> dict:
    """Build the extractors (on the encode thread, which is where they run); the time it takes
    goes to ``clock["seconds"]``.

    FFmpeg's decoder threads already use the cores: oversubscribing them with PyTorch's intra-op
    threads slows both down badly (docs/decoding.md), so the encode thread gets half of them.
    (The setting is per thread: the caller's own torch threads are untouched.)"""
    if not mods:
        return {}
    t0 = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        return pool.get(mods)
    finally:
        clock["seconds"] = time.perf_counter() - t0


def _read_shots(path: Path) -> tuple[list[Shot], float]:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["shot_idx", "start_frame", "end_frame", "start_s", "end_s"])
    rows = t.to_pydict()
    shots = [Shot(*vals) for vals in zip(rows["shot_idx"], rows["start_frame"], rows["end_frame"],
                                         rows["start_s"], rows["end_s"])]
    return shots, (shots[-1].end_s if shots else 0.0)


def _read_manifest(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _subtitle_cues(inp: MovieInput, info: ProbeInfo, warnings: list) -> tuple:
    """Cues from ``--subtitles``, else the stream ``--subtitle-track`` chose, else a sidecar next
    to the video, else the first embedded text stream."""
    from .subtitles import (
        Cue,
        read_embedded_subtitles,
        read_subtitle_file,
        text_subtitle_streams,
    )

    video = Path(inp.video)
    path = inp.subtitles
    if path is not None and info.subtitle_track is not None:
        raise InputError("--subtitles and --subtitle-track exclude each other")
    if path is None and info.subtitle_track is None:
        for ext in (".srt", ".vtt", ".ass", ".ssa"):
            cand = video.with_suffix(ext)
            if cand.exists():
                path = cand
                break
    # Cue times count from the container's start; our timeline from the first video frame.
    shift = float(info.video.start_time or 0) - info.start_time

    def shifted(cues):
        return [Cue(c.start_s - shift, c.end_s - shift, c.text) for c in cues
                if c.end_s - shift > 0] if shift else cues

    if path is not None:
        cues, w = read_subtitle_file(path)
        warnings += w
        return shifted(cues), str(Path(path).resolve())
    streams = text_subtitle_streams(video) if info.subtitles else []
    text_streams = [s for s in streams if s["is_text"]]
    chosen = (streams[info.subtitle_track] if info.subtitle_track is not None
              else text_streams[0] if text_streams else None)
    if chosen:
        if info.subtitle_track is None and len(text_streams) > 1:
            warnings.append(_track_note("subtitle", len(text_streams), chosen["index"],
                                        chosen["language"]))
        cues, w = read_embedded_subtitles(video, chosen["index"])   # a bitmap stream: error
        warnings += w
        return shifted(cues), f"subtitle stream {chosen['index']}"
    if info.subtitles:
        warnings.append("only bitmap subtitle streams: subtitle features absent")
    return None, None


def _track_note(kind: str, n: int, track: int, language: str | None) -> str:
    return (f"{n} {kind} tracks, using #{track} ({language or 'no language tag'}); "
            f"choose with --{kind}-track")


# Decoding that ends more than this much before the headers' duration is reported. Headers are
# not exact: the container's duration covers every stream (audio often runs a little past the
# last frame), and where a container stores none FFmpeg estimates it from the bit rate, off by a
# few per cent. Whole-second / 2 % gaps are beyond that noise, while a file cut short (a broken
# download or copy) typically loses far more.
SHORT_DECODE_S, SHORT_DECODE_FRACTION = 1.0, 0.02


def _timeline_warnings(info: ProbeInfo, end_time: float, cues: list | None) -> list[str]:
    """Checks that need the decoded timeline's end: decoding that stopped clearly short of the
    headers' duration (a truncated or damaged file), and subtitle cues outside the movie."""
    out = []
    expected = info.expected_duration()
    if expected and expected - end_time > max(SHORT_DECODE_S, SHORT_DECODE_FRACTION * expected):
        out.append(f"decoding ended at {end_time:.1f} s of the {expected:.1f} s the file's "
                   f"headers announce: the file is truncated or damaged")
    outside = sum(c.end_s <= 0 or c.start_s >= end_time for c in cues or [])
    if outside:
        where = f"{outside} of {len(cues)} cues lie outside the movie's 0–{end_time:.1f} s"
        out.append(f"subtitles: {where} (wrong file or offset?)" if outside * 2 <= len(cues)
                   else f"subtitles: {where}: most do not fit this movie (another movie's "
                   f"subtitles, or an offset?)")
    return out


def _check_strict(cfg: ExtractConfig, movie_id: str, warnings: Sequence[str]) -> None:
    """--strict: any warning fails the movie."""
    if cfg.strict and warnings:
        raise MegaPipeError(f"{movie_id}: failed (--strict) on {len(warnings)} warning"
                            f"{'s' * (len(warnings) > 1)}: {'; '.join(warnings)}")


def _synopsis_input(inp: MovieInput, extractors: ExtractorPool) -> dict | None:
    from .synopsis import read_synopsis

    if inp.synopsis is None:
        return None
    sentences = read_synopsis(inp.synopsis, one_per_line=inp.synopsis_lines)
    e = extractors.entries["subtitle"]
    key = stage_key(contract=contract.CONTRACT_VERSION, model=e.name, sha=e.sha256,
                    sentences=bytes_fingerprint("\n".join(sentences).encode()))
    return {"sentences": sentences, "key": key}


def run_extract(inputs: Sequence[MovieInput], out_root: Path, cfg: ExtractConfig,
                *, debug: bool = False) -> tuple[list[dict], list[tuple[str, str]]]:
    """Extract several movies; a failing movie is reported (an error on the log) and the others
    carry on, unless ``debug``: then its exception propagates (with its traceback)."""
    from mega_pipe.extractors.errors import ExtractorError, WeightsNotFoundError

    ids: dict[str, list[str]] = {}
    for inp in inputs:
        ids.setdefault(movie_id_of(inp), []).append(str(inp.video))
    bad = [k for k in ids if not k or k.startswith(".") or "/" in k or os.sep in k]
    if bad:
        raise MegaPipeError(f"movie id {bad[0]!r} cannot name a folder (empty, hidden or a path)")
    clashes = {k: v for k, v in ids.items() if len(v) > 1}
    if clashes:
        k, v = next(iter(clashes.items()))
        raise MegaPipeError(f"{len(v)} inputs would share the output folder {Path(out_root) / k} "
                            f"({', '.join(v)}): extract them in separate runs with --id or --out")
    extractors = ExtractorPool(cfg)
    root_existed = Path(out_root).exists()
    done, failed = [], []
    try:
        for inp in inputs:
            try:
                done.append(extract_movie(inp, out_root, cfg, extractors))
            except WeightsNotFoundError:
                raise                      # no movie can be processed: stop the run
            except Exception as e:         # this movie failed; the others carry on
                if debug:
                    raise
                msg = (str(e) if isinstance(e, (MegaPipeError, ExtractorError))
                       else f"{inp.video}: {type(e).__name__}: {e}")
                failed.append((str(inp.video), msg))
                log.error(msg)
    finally:
        if not done and not root_existed:
            with contextlib.suppress(OSError):      # leave no empty output root behind
                Path(out_root).rmdir()
    return done, failed

