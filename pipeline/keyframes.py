"""``mega-pipe extract --keyframes DIR --shot-file FILE`` / ``--movienet ROOT``: MovieNet's key
frames -> the feature-folder contract (docs/contract.md), with no video decoding.

MovieNet (and so MovieNet-318, docs/sources.md) releases no movies, only **3 key frames per shot**
(``shot_XXXX_img_{0,1,2}.jpg``, 240 px high) and a shot file per movie with one line per shot,
``start_frame end_frame kf1 kf2 kf3`` (frame numbers at 24 fps, end frame inclusive, the key
frames' own frame numbers). MEGA's per-second sampling needs the video, so we encode the key
frames and average them per shot, as BaSSL does (docs/sources.md, "BaSSL"). So:

- shots come from the shot file: ``start_frame`` = start, ``end_frame`` = end + 1 (our contract's
  end is exclusive), ``start_s`` = start / 24, ``end_s`` = (end + 1) / 24 (the cut is at the start
  of the next frame, as ``manifests/movienet.py`` places MovieNet's boundaries);
- each key frame is one sample of every image modality (FRAME sampling: ``bassl``, ``place``,
  ``clip``, ``appr``), with the interval ``[kf / 24, (kf + 1) / 24)``: the key frame's own frame.
  It lies inside its shot, so the overlap pooling (``pooling.pool``) gives each shot the mean of
  its own key frames and a count of 3 (fewer where an image is missing);
- modalities that need video clips, audio or subtitles are *absent* (null column, count 0);
- the manifest records ``"source_kind": "movienet-keyframes"``, the key-frame folder and the shot
  file; the per-movie lock, the ``.partial`` staging, the cache keys in every file and the
  carry-on-on-failure of several movies are extract's own (``write.py``,
  ``extract.run_extract``).

Images are read with PIL and scaled (PIL bicubic) so their short side is the model set's working
resolution (256 px for both sets): exactly BaSSL's ``Resize(256, BICUBIC)`` for its encoder; the
entry's own preprocessing then runs as for video frames.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..manifests.errors import MegaPipeError
from ..manifests.features import (
    CONTRACT_VERSION,
    DETECTION_KEY,
    FeatureFolder,
    cached_key,
)
from ..manifests.movienet import read_shot_keyframes
from ..manifests.provenance import code_version
from .cache import stage_key
from .inputs import ExtractConfig, movie_id_of
from .models import ExtractorPool
from .plan import MoviePlan
from .shots import Shot
from .write import (
    begin_writing,
    finish_movie,
    up_to_date,
    write_features,
    write_movie_folder,
)

log = logging.getLogger(__name__)

FPS = 24.0                       # MovieNet's frame numbers and BaSSL's metrics (docs/sources.md)
KEYFRAMES_PER_SHOT = 3
SOURCE_KIND = "movienet-keyframes"
KEYFRAME_NAME = "shot_{shot:04d}_img_{k}.jpg"
# MovieNet's layout under ROOT, first match wins: BaSSL's README layout (240P_frames/<imdb>/ and
# scene318/shot_movie318/<imdb>.txt), then the names MovieNet's own archives unpack to.
KEYFRAME_DIRS = ("240P_frames", "keyf_240p", "240P")
SHOT_DIRS = ("scene318/shot_movie318", "shot_movie318", "shot_movie")
ABSENT_REASON = {"clip": "key frames only: no video clips", "audio": "key frames only: no audio",
                 "text": "key frames only: no subtitles"}


@dataclass(frozen=True)
class KeyframeInput:
    """One movie as MovieNet releases it: a folder of key frames and its shot file."""

    keyframes: Path
    shot_file: Path
    movie_id: str | None = None     # default: the key-frame folder's name (the imdb id)

    @property
    def source(self) -> Path:
        return Path(self.keyframes)


def _first_dir(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise MegaPipeError(f"{root} has no {what} folder (looked for {', '.join(names)})")


def movienet_inputs(root: str | Path, ids: Sequence[str] = ()) -> list[KeyframeInput]:
    """Every movie of a MovieNet folder that has both a shot file and a key-frame folder (or the
    movies ``ids``, which must have both)."""
    root = Path(root)
    if not root.is_dir():
        raise MegaPipeError(f"--movienet {root}: no such folder")
    frames, shots = _first_dir(root, KEYFRAME_DIRS, "key-frame"), _first_dir(root, SHOT_DIRS, "shot-file")
    if ids:
        missing = [i for i in ids if not (shots / f"{i}.txt").is_file()]
        if missing:
            raise MegaPipeError(f"no shot file {shots / (missing[0] + '.txt')}"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return [KeyframeInput(frames / i, shots / f"{i}.txt") for i in ids]
    files = sorted(shots.glob("*.txt"))
    inputs = [KeyframeInput(frames / f.stem, f) for f in files if (frames / f.stem).is_dir()]
    if len(inputs) < len(files):
        log.warning(f"{len(files) - len(inputs)} of {len(files)} shot files in {shots} have no key-frame "
            f"folder in {frames}: skipped")
    if not inputs:
        raise MegaPipeError(f"no movie of {shots} has key frames in {frames}")
    return inputs


def keyframe_inputs(movienet: Path | None, keyframes: Path | None, shot_file: Path | None,
                    ids: Sequence[str] = (), movie_id: str | None = None) -> list[KeyframeInput]:
    """``--movienet ROOT [IMDB ...]`` or ``--keyframes DIR --shot-file FILE``: the inputs."""
    if movienet:
        if keyframes or shot_file or movie_id:
            raise MegaPipeError("--movienet takes the movies from ROOT: no --keyframes, "
                                "--shot-file or --id")
        return movienet_inputs(movienet, ids)
    if not (keyframes and shot_file) or ids:
        raise MegaPipeError("--keyframes DIR and --shot-file FILE go together, without VIDEO")
    return [KeyframeInput(keyframes, shot_file, movie_id)]


def extract_keyframes(inp: KeyframeInput, out_root: Path, cfg: ExtractConfig,
                      extractors: ExtractorPool) -> dict:
    """Extract one movie's key frames into ``out_root/<movie_id>/``; return its manifest (with
    ``"up_to_date": True`` when everything was cached)."""
    return write_movie_folder(out_root, movie_id_of(inp),
                              lambda folder: _extract(inp, folder, cfg, extractors))


def _shots(path: Path, warnings: list[str]) -> tuple[list[Shot], np.ndarray]:
    """The shots and their key-frame numbers (n, 3), checked to lie inside their shot."""
    rows = read_shot_keyframes(path)
    start, end, kf = rows[:, 0], rows[:, 1], rows[:, 2:2 + KEYFRAMES_PER_SHOT]
    inside = (kf >= start[:, None]) & (kf <= end[:, None])
    if not inside.all():
        offsets = (kf >= 0) & (kf <= (end - start)[:, None])
        if offsets.all():      # some releases count key frames from the shot's start
            kf = kf + start[:, None]
            warnings.append(f"{path.name}: key-frame numbers read as offsets from the shot start")
        else:
            bad = int(np.flatnonzero(~inside.all(axis=1))[0])
            raise MegaPipeError(f"{path}: shot {bad}: key frames {kf[bad].tolist()} lie outside "
                                f"the shot's frames {start[bad]}-{end[bad]}")
    shots = [Shot(i, int(s), int(e) + 1, s / FPS, (e + 1) / FPS)
             for i, (s, e) in enumerate(zip(start, end))]
    return shots, kf


def _fingerprint(shot_file: Path, images: list[Path]) -> str:
    """sha256 of the shot file and of every key frame (name and content): any changed image or
    shot line recomputes the features."""
    h = hashlib.sha256(shot_file.read_bytes())
    for p in images:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _load(path: Path, short_side: int) -> np.ndarray:
    """An RGB key frame scaled (PIL bicubic) to the working short side."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = short_side / min(w, h)
        if scale != 1:
            im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        return np.asarray(im)


def _encode(images: list[Path], mods: list[str], extractors: ExtractorPool, stages: dict,
            progress: bool) -> dict[str, np.ndarray]:
    """Every image through every modality of ``mods``, a batch at a time (never the whole movie
    in memory); consecutive images of one size share a batch."""
    from tqdm import tqdm

    built = extractors.get(mods)
    size = max(1, min(built[m].batch_size for m in mods))
    out: dict[str, list[np.ndarray]] = {m: [] for m in mods}
    seconds = dict.fromkeys(mods, 0.0)
    with tqdm(total=len(images), desc="key frames", unit="img", disable=not progress or None,
              leave=False, dynamic_ncols=True) as bar:
        for i in range(0, len(images), size):
            frames = [_load(p, extractors.frame_size) for p in images[i:i + size]]
            j = 0
            while j < len(frames):
                k = j + 1
                while k < len(frames) and frames[k].shape == frames[j].shape:
                    k += 1
                batch = np.stack(frames[j:k])
                for m in mods:
                    t0 = time.perf_counter()
                    out[m].append(np.asarray(built[m].encode(batch), np.float32))
                    seconds[m] += time.perf_counter() - t0
                j = k
            bar.update(len(frames))
    stages["keyframes"]["encode_seconds"] = seconds
    return {m: np.concatenate(v) if v else np.zeros((0, built[m].dim), np.float32)
            for m, v in out.items()}


def _extract(inp: KeyframeInput, folder: FeatureFolder, cfg: ExtractConfig,
             extractors: ExtractorPool) -> dict:
    t_run = time.perf_counter()
    kdir, shot_file = Path(inp.keyframes), Path(inp.shot_file)
    if not kdir.is_dir():
        raise MegaPipeError(f"{kdir}: no such key-frame folder")
    warnings: list[str] = []
    shots, kf = _shots(shot_file, warnings)
    images, t_start, t_end = _keyframes(kdir, shot_file, shots, kf, warnings)
    plan = _plan(inp, folder, shot_file, images, extractors, warnings)
    cached = up_to_date(plan, cfg)
    if cached is not None:
        return cached
    begin_writing(plan, cfg, extractors, plan.todo)
    stages: dict[str, dict] = {
        "shots": {"key": plan.shots_key, "count": len(shots), "cached": plan.shots_cached,
                  "source": str(shot_file.resolve()), "fps": FPS},
        "keyframes": {"images": len(images),
                      "missing": len(shots) * KEYFRAMES_PER_SHOT - len(images)}}
    t0 = time.perf_counter()
    fresh = _encode(images, plan.todo, extractors, stages, cfg.progress) if plan.todo else {}
    stages["keyframes"]["seconds"] = time.perf_counter() - t0
    meta = {m: {**extractors.meta(m, used=m not in plan.absent), "sampling": "keyframe"}
            for m in extractors.modalities}
    models, pooled = write_features(plan, shots, {m: (t_start, t_end, v) for m, v in fresh.items()},
                                    meta, stages)
    empty = int(np.sum(pooled[plan.wanted[0]][1] == 0)) if plan.wanted else 0
    if empty:
        plan.warnings.append(f"{empty} shots have no key frame: their features are zeros with count 0")
    return finish_movie(plan, cfg, _manifest(plan, kdir, shot_file, shots, cfg, extractors,
                                             models, stages, time.perf_counter() - t_run))


def _keyframes(kdir: Path, shot_file: Path, shots: list[Shot], kf: np.ndarray,
               warnings: list[str]) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The key-frame images found, in shot order, and each one's interval: its own frame."""
    found = [(i, k, kdir / KEYFRAME_NAME.format(shot=i, k=k))
             for i in range(len(shots)) for k in range(KEYFRAMES_PER_SHOT)]
    found = [(i, k, p) for i, k, p in found if p.is_file()]
    if not found:
        raise MegaPipeError(f"{kdir}: none of the {len(shots) * KEYFRAMES_PER_SHOT} key frames "
                            f"of {shot_file.name} ({KEYFRAME_NAME.format(shot=0, k=0)}, ...)")
    n_missing = len(shots) * KEYFRAMES_PER_SHOT - len(found)
    if n_missing:
        warnings.append(f"{n_missing} of {len(shots) * KEYFRAMES_PER_SHOT} key frames missing")
    frame_no = np.array([kf[i, k] for i, k, _ in found], np.float64)
    return [p for _, _, p in found], frame_no / FPS, (frame_no + 1) / FPS


def _plan(inp: KeyframeInput, folder: FeatureFolder, shot_file: Path, images: list[Path],
          extractors: ExtractorPool, warnings: list[str]) -> MoviePlan:
    """What this run does to the movie's folder: the image modalities, their cache keys (over
    every image and the shot file) and which of them must be computed."""
    movie_id, kdir = movie_id_of(inp), Path(inp.keyframes)
    fingerprint = _fingerprint(shot_file, images)
    previous = folder.read_manifest()
    if previous and previous["source"]["fingerprint"] != fingerprint \
            and previous["source"]["path"] != str(kdir.resolve()):
        raise MegaPipeError(f"{folder} holds the features of another movie "
                            f"({previous['source']['path']}): give {kdir} another --id or --out")
    wanted = [m for m in extractors.modalities if extractors.sampling(m) == "frame"]
    absent = {m: ABSENT_REASON[extractors.sampling(m)] for m in extractors.modalities
              if m not in wanted}
    warnings += [f"{m}: absent ({why})" for m, why in absent.items()]
    keys = {m: stage_key(contract=CONTRACT_VERSION, kind=SOURCE_KIND, modality=m,
                         model=extractors.entries[m].name, sha=extractors.entries[m].sha256,
                         preprocess=extractors.entries[m].preprocess, source=fingerprint,
                         frame_size=extractors.frame_size) for m in wanted}
    shots_key = stage_key(kind=SOURCE_KIND, shots=hashlib.sha256(shot_file.read_bytes()).hexdigest(),
                          fps=FPS)
    return MoviePlan(
        movie_id=movie_id, folder=folder, fingerprint=fingerprint, previous=previous,
        wanted=wanted, absent=absent, samplings={m: "keyframe" for m in wanted}, keys=keys,
        shots_key=shots_key,
        pool_key=stage_key(shots=shots_key, **keys, **({"absent": absent} if absent else {})),
        todo=[m for m in wanted if cached_key(folder.samples_path(m)) != keys[m]],
        shots_cached=folder.cached_key(FeatureFolder.SHOTS, DETECTION_KEY) == shots_key,
        warnings=warnings)


def _manifest(plan: MoviePlan, kdir: Path, shot_file: Path, shots: list[Shot],
              cfg: ExtractConfig, extractors: ExtractorPool, models: dict, stages: dict,
              seconds: float) -> dict:
    return {
        "contract": CONTRACT_VERSION,
        "movie_id": plan.movie_id,
        "code_version": code_version(),
        "source_kind": SOURCE_KIND,
        "source": {"kind": SOURCE_KIND, "path": str(kdir.resolve()),
                   "keyframes": str(kdir.resolve()), "shot_file": str(shot_file.resolve()),
                   "fingerprint": plan.fingerprint, "fps": FPS, "subtitles": None,
                   "synopsis": None},
        "probe": None,
        "timeline": {"duration_s": shots[-1].end_s, "frames": shots[-1].end_frame, "fps": FPS},
        "config": {"model_set": cfg.model_set, "modalities": list(cfg.modalities or []) or None,
                   "device": cfg.device, "frame_size": extractors.frame_size,
                   "offline": cfg.offline, "keyframes_per_shot": KEYFRAMES_PER_SHOT},
        "models": models,
        "modalities": plan.wanted,
        "pool_key": plan.pool_key,
        "stages": stages,
        "outputs": plan.folder.outputs(plan.wanted, synopsis=False),
        "warnings": plan.warnings,
        "seconds": seconds,
    }
