"""``mega-pipe report``: one self-contained HTML file for a movie (docs/report.md).

Inputs: a ``boundaries.json`` (docs/boundaries.md) and/or the movie's feature folder
(docs/contract.md). The page has no external references at all (inline CSS/JS, thumbnails as
data URIs, similarity matrices as quantised numbers drawn on <canvas>), so it works offline and
from a USB stick; only the movie itself is referenced, by a relative and an absolute file URI,
to play a shot when it is clicked.

Data gathering and rendering are separate: :func:`gather` builds one JSON-able dict, which
:func:`render_html` puts into ``report_template.html`` and :func:`render_pngs` draws with
matplotlib (``--png DIR``). Names, frame numbers, timecodes and the download links come from
pipeline/export.py, so the page numbers and times everything exactly as the exports do.
"""
from __future__ import annotations

import base64
import json
import logging
import math
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..manifests.atomic import atomic_path, check_output_dir, check_output_file, warn_replacing
from ..manifests.boundaries import read_boundaries
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder, vectors_of
from . import export
from .decode import ffmpeg_exe

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("report_template.html")
NO_DATA = 255            # quantised cell value meaning "undefined" (a shot without samples)
LEVELS = 254             # defined values are quantised to 0..254
# (format, file extension, MIME type) of the exports offered as downloads, for every level
DOWNLOADS = (("csv", "csv", "text/csv"), ("edl", "edl", "text/plain"), ("webvtt", "vtt", "text/vtt"))


# ---------------------------------------------------------------------------------- inputs
def locate_features(doc: dict | None, boundaries_path: Path | None,
                    features: Path | None) -> Path | None:
    """The feature folder: ``--features``, else the boundaries' ``provenance.features`` (as
    written, then relative to the boundaries file); None when it is not found."""
    if features is not None:
        if not FeatureFolder(features).is_complete:
            raise MegaPipeError(f"--features {features} is not a complete feature folder "
                                f"({FeatureFolder(features).problem()}; see docs/contract.md)")
        return Path(features)
    rel = ((doc or {}).get("provenance") or {}).get("features")
    if not rel:
        return None
    for cand in (Path(rel), Path(boundaries_path).parent / rel if boundaries_path else None):
        if cand is not None and FeatureFolder(cand).is_complete:
            return cand
    return None


def read_features(path: Path) -> dict:
    """Shots, pooled vectors, subtitle cues and synopsis sentences of a feature folder."""
    folder = FeatureFolder(path)
    try:
        manifest = folder.read_manifest()
        table = folder.read_shots()
        mods = folder.modalities()
    except (OSError, ValueError) as e:
        raise MegaPipeError(f"feature folder {path}: cannot read ({e})") from None
    if manifest is None:
        raise MegaPipeError(f"feature folder {path}: {folder.problem()}")
    out = {
        "manifest": manifest,
        "starts": table["start_s"].to_numpy().astype(float),
        "ends": table["end_s"].to_numpy().astype(float),
        "vectors": {m: vectors_of(table[m]) for m in mods},
        "counts": {m: table[f"{m}_count"].to_numpy() for m in mods},
        "cues": [],
        "sentences": None,
    }
    if folder.samples_path("subtitle").is_file():
        s = folder.read_samples("subtitle")
        if "text" in s:
            out["cues"] = [(float(a), float(b), t or "") for a, b, t in
                           zip(s["t_start"], s["t_end"], s["text"])]
    if folder.synopsis_path.is_file():
        out["sentences"] = folder.read_synopsis()[0]
    return out


# ------------------------------------------------------------------------------- matrices
def _bins(n: int, max_cells: int) -> int:
    """Shots per matrix cell: 1, or more so that the matrix side stays ≤ max_cells (0: no cap)."""
    return 1 if max_cells <= 0 or n <= max_cells else math.ceil(n / max_cells)


def similarity_matrix(vectors: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity of shots (NaN where a shot has no samples), averaged over blocks of k
    consecutive shots. The block mean of x_i·x_j is (Σ_A x)·(Σ_B x)/(|A||B|), so the binned
    matrix costs O((N/k)²·D), never the full N×N."""
    x = np.asarray(vectors, np.float64)
    norm = np.linalg.norm(x, axis=1)
    valid = (np.asarray(counts) > 0) & (norm > 0)
    x = np.where(valid[:, None], x / np.where(norm > 0, norm, 1)[:, None], 0.0)
    n = len(x)
    cells = math.ceil(n / k)
    pad = cells * k - n
    xs = np.concatenate([x, np.zeros((pad, x.shape[1]))]).reshape(cells, k, -1).sum(1)
    cnt = np.concatenate([valid, np.zeros(pad, bool)]).reshape(cells, k).sum(1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (xs @ xs.T) / np.outer(cnt, cnt)
    m[(cnt == 0)[:, None] | (cnt == 0)[None, :]] = np.nan
    return np.clip(m, -1.0, 1.0)


def quantise(m: np.ndarray, symmetric: bool) -> dict:
    """uint8 cells (0..254 between lo and hi, 255 = undefined), base64. lo/hi are the 1st/99th
    percentiles of the off-diagonal values, so the colour scale shows the structure rather than
    the self-similarity of the diagonal. Symmetric matrices keep their lower triangle only."""
    vals = m[~np.eye(*m.shape, dtype=bool)] if symmetric and m.shape[0] > 1 else m.ravel()
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(np.percentile(vals, 1)), float(np.percentile(vals, 99))) if len(vals) else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    q = np.clip(np.round((m - lo) / (hi - lo) * LEVELS), 0, LEVELS)
    q = np.where(np.isfinite(m), q, NO_DATA).astype(np.uint8)
    data = q[np.tril_indices(m.shape[0])] if symmetric else q.ravel()
    return {"rows": int(m.shape[0]), "cols": int(m.shape[1]), "lo": round(lo, 5), "hi": round(hi, 5),
            "triangle": symmetric, "b64": base64.b64encode(data.tobytes()).decode("ascii")}


def sync_matrix(doc: dict, n_shots: int) -> np.ndarray | None:
    """The boundaries' sentence×shot matrix when present and rectangular (sentences × shots;
    a shots × sentences matrix is transposed), else None."""
    raw = doc.get("sync_matrix") if doc else None
    if raw is None:
        return None
    try:
        m = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if m.ndim != 2 or m.size == 0:
        return None
    if m.shape[1] != n_shots and m.shape[0] == n_shots:
        m = m.T
    return m if m.shape[1] == n_shots else None


def bin_columns(m: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return m
    cells = math.ceil(m.shape[1] / k)
    pad = np.full((m.shape[0], cells * k - m.shape[1]), np.nan)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # an all-NaN cell stays NaN
        return np.nanmean(np.concatenate([m, pad], 1).reshape(m.shape[0], cells, k), axis=2)


def shot_cues(starts, ends, cues) -> list[list[int]]:
    """For every shot, the indices of the subtitle cues overlapping it by a positive length
    (shots are in time order and do not overlap, so the candidates of a cue are a range)."""
    out = [[] for _ in starts]
    s, e = np.asarray(starts, float), np.asarray(ends, float)
    for c, (a, b, _) in enumerate(cues):
        first = int(np.searchsorted(e, a, side="right"))     # first shot ending after a
        last = int(np.searchsorted(s, b, side="left")) - 1    # last shot starting before b
        for i in range(max(first, 0), min(last, len(s) - 1) + 1):
            if min(e[i], b) - max(s[i], a) > 0:
                out[i].append(c)
    return out


# ----------------------------------------------------------------------------- thumbnails
def thumbnail_times(starts, ends, frames) -> list[float]:
    """Seek times for the middle frame of every shot. A fast seek to t yields the first frame
    whose time is >= t, so t is half a frame before the middle frame (never past a shot's last
    frame: a 1-frame shot, or the movie's last frame, gets its own frame)."""
    out = []
    for a, b, (fa, fb) in zip(starts, ends, frames):
        step = (b - a) / max(1, fb - fa)                  # the shot's (average) frame duration
        out.append(max(0.0, a + ((fb - fa - 1) // 2 - 0.5) * step))
    return out


def make_thumbnails(movie: Path, times: list[float], width: int, batch: int = 24,
                    jobs: int | None = None, progress=None) -> list[str | None]:
    """One JPEG (base64) per time, ``width`` px wide: the frame on screen at that time.

    Each ffmpeg call takes ``batch`` inputs, each opened with a fast input seek (``-ss`` before
    ``-i``: jump to the keyframe before t, decode up to t) and writing one frame; calls run in
    parallel. The movie is never decoded from start to end."""
    exe = ffmpeg_exe()
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    vf = f"scale=trunc(iw*sar/2)*2:ih,scale={int(width)}:-2,setsar=1"
    out: list[str | None] = [None] * len(times)
    chunks = [list(range(i, min(i + batch, len(times)))) for i in range(0, len(times), batch)]
    done = [0]

    def run(idx: list[int]) -> None:
        with tempfile.TemporaryDirectory(prefix="mega-pipe-thumbs-") as tmp:
            cmd = [exe, "-nostdin", "-v", "error", "-y"]
            for i in idx:
                cmd += ["-ss", f"{max(0.0, times[i]):.6f}", "-i", str(movie)]
            for k, i in enumerate(idx):
                cmd += ["-map", f"{k}:v:0", "-frames:v", "1", "-vf", vf, "-q:v", "5",
                        "-an", "-sn", "-dn", f"{tmp}/{i}.jpg"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                last = (r.stderr.strip().splitlines() or ["?"])[-1]
                raise MegaPipeError(f"thumbnails of {movie}: ffmpeg failed ({last})")
            for i in idx:
                p = Path(tmp) / f"{i}.jpg"
                if p.is_file() and p.stat().st_size:
                    out[i] = base64.b64encode(p.read_bytes()).decode("ascii")
        done[0] += len(idx)
        if progress:
            progress(done[0])

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(run, chunks))
    return out


def movie_sources(movie: Path | None, out_html: Path) -> list[str]:
    """URLs for the <video>: relative to the report (survives moving both together), then the
    absolute file:// URI."""
    if movie is None:
        return []
    movie = Path(movie).absolute()
    srcs = []
    try:
        rel = os.path.relpath(movie, Path(out_html).absolute().parent)
        srcs.append("/".join(quote(part) for part in Path(rel).parts))
    except ValueError:          # another drive (Windows)
        pass
    srcs.append(movie.as_uri())
    return srcs


# ---------------------------------------------------------------------------------- gather
def gather(boundaries: Path | None = None, features: Path | None = None,
           movie: Path | None = None, thumbnails: bool = True, thumbnail_width: int = 160,
           matrix_size: int = 1000, out_html: Path | None = None) -> dict:
    """Everything the page shows, as one JSON-able dict (plus ``_float`` matrices for PNGs)."""
    if boundaries is None and features is None:
        raise MegaPipeError("give a boundaries.json and/or --features (a feature folder)")
    doc = read_boundaries(boundaries) if boundaries is not None else None
    folder = locate_features(doc, boundaries, features)
    feats = read_features(folder) if folder is not None else None
    notes = []
    if folder is None:
        notes.append("no feature folder found (give --features): similarity matrices and "
                     "subtitles are not shown")
    starts, ends, info = _shot_times(doc, feats, boundaries, folder)
    src = export.source_of(doc, str(boundaries)) if doc is not None else export.load_source(folder)
    movie_path = Path(movie) if movie is not None else (Path(info["path"]) if info.get("path") else None)
    if thumbnails and (movie_path is None or not movie_path.is_file()):
        where = f"{movie_path} not found" if movie_path else "no movie path in the inputs"
        raise MegaPipeError(f"thumbnails need the movie: {where} (give --movie PATH, or "
                            "--no-thumbnails)")
    data = {
        "generator": "mega-pipe report",
        "movie": {"id": info.get("id") or "movie", "path": str(movie_path) if movie_path else None,
                  "duration_s": float(info.get("duration_s") or max(ends)),
                  "frame_rate": info.get("frame_rate")},
        "sources": movie_sources(movie_path, out_html or Path("report.html")),
        "shots": [[round(a, 4), round(b, 4)] for a, b in zip(starts, ends)],
        "scenes": None, "scene_boundary_prob": None, "scene_threshold": None,
        "turning_points": None, "acts": None, "missing": [], "provenance": {},
        "thumbnails": None, "thumbnail_width": int(thumbnail_width),
        "similarity": [], "matrix_note": None, "sync": None, "cues": [], "shot_cues": [],
        "notes": notes, "_float": {"similarity": {}, "sync": None},
    }
    data.update(_timing(src))
    notes.extend(f"timecodes and frame numbers count as in the EDL: {line}"
                 for line in export.notes(src, "edl"))
    if doc is not None:
        data.update(_boundary_parts(doc, src))
    data["downloads"] = downloads(src)
    if folder is not None:
        data["provenance"]["features_used"] = str(folder)
    _add_matrices(data, doc, feats, starts, ends, matrix_size)
    if thumbnails:
        t0 = time.perf_counter()
        log.info("thumbnails: %d shot%s from %s", len(starts), "" if len(starts) == 1 else "s",
                 movie_path)
        data["thumbnails"] = make_thumbnails(
            movie_path, thumbnail_times(starts, ends, data["frames"]), thumbnail_width)
        missing = sum(t is None for t in data["thumbnails"])
        if missing:
            notes.append(f"{missing} thumbnail(s) could not be decoded")
        log.info("thumbnails: %d in %.1f s", len(starts) - missing, time.perf_counter() - t0)
    return data


def _shot_times(doc: dict | None, feats: dict | None, boundaries, folder) -> tuple:
    """(starts, ends, movie info) from the boundaries, else from the feature folder."""
    if doc is None:
        man = feats["manifest"]
        info = {"id": man.get("movie_id"), "path": (man.get("source") or {}).get("path"),
                "duration_s": (man.get("timeline") or {}).get("duration_s"),
                "frame_rate": ((man.get("probe") or {}).get("video") or {}).get("frame_rate")}
        return feats["starts"].tolist(), feats["ends"].tolist(), info
    starts = [float(s["start_s"]) for s in doc["shots"]]
    ends = [float(s["end_s"]) for s in doc["shots"]]
    if feats is not None and len(feats["starts"]) != len(starts):
        raise MegaPipeError(
            f"feature folder {folder} has {len(feats['starts'])} shots but {boundaries} has "
            f"{len(starts)}: they are not of the same movie and run (give the right --features)")
    return starts, ends, dict(doc.get("movie") or {})


def _timing(src: export.Source) -> dict:
    """Frame numbers and SMPTE timecodes of the shots, as the EDL and CSV exports count them
    (export.timecode_rate: the nearest timecode rate; drop-frame at 29.97 and 59.94)."""
    rate, _ = export.timecode_rate(src.frame_rate)
    frames = [[int(s["start_frame"]), int(s["end_frame"])] for s in src.doc["shots"]]
    drop = export.is_drop_frame(rate)
    return {
        "timecode": {"rate": round(rate, 3), "drop_frame": drop,
                     "label": f"{round(rate, 3):g} {'DF' if drop else 'NDF'}"},
        "frames": frames,
        "shot_tc": [[export.timecode(a, rate), export.timecode(b, rate)] for a, b in frames],
    }


def _segment_rows(src: export.Source, level: str) -> list[dict]:
    """One dict per scene or act of the boundaries (empty acts included, flagged): the export's
    name ("Scene 1", "Act 2: New Situation"), shots, frames (end exclusive) and timecodes."""
    rate, _ = export.timecode_rate(src.frame_rate)
    return [{"label": s.name, "first_shot": s.first_shot, "last_shot": s.last_shot,
             "confidence": s.confidence, "frames": [s.start_frame, s.end_frame],
             "tc": [export.timecode(s.start_frame, rate), export.timecode(s.end_frame, rate)],
             "empty": s.frames == 0}
            for s in export.segments(src, level, keep_empty=True)]


def _boundary_parts(doc: dict, src: export.Source) -> dict:
    """The scenes, turning points, acts, missing lines and provenance of a boundaries doc."""
    prov = doc.get("provenance") or {}
    provenance = {k: prov.get(k) for k in ("scene_checkpoint", "act_checkpoint", "features")}
    provenance["code_version"] = (prov.get("code_version") or {}).get("version")
    rate, _ = export.timecode_rate(src.frame_rate)
    tp_frame = [int(doc["shots"][t["shot"]]["start_frame"]) for t in doc.get("turning_points") or []]
    return {
        "scenes": _segment_rows(src, "scenes") if doc.get("scenes") else None,
        "scene_boundary_prob": doc.get("scene_boundary_prob"),
        "scene_threshold": doc.get("scene_threshold"),
        "turning_points": [{"index": t.get("index"), "name": t.get("name"), "shot": t["shot"],
                            "confidence": t.get("confidence"), "frame": f,
                            "tc": export.timecode(f, rate)}
                           for t, f in zip(doc["turning_points"], tp_frame)]
        if doc.get("turning_points") else None,
        "acts": [{"index": a.get("index"), "name": a.get("name"), **row}
                 for a, row in zip(doc["acts"], _segment_rows(src, "acts"))]
        if doc.get("acts") else None,
        "missing": list(doc.get("missing") or []),
        "provenance": provenance,
    }


def downloads(src: export.Source) -> list[dict]:
    """Every level of ``src`` as CSV, EDL and WebVTT (export.render, the text `mega-pipe export`
    writes), each a ``data:`` URL named ``<movie_id>-<level>.<ext>`` for an ``<a download>``."""
    out = []
    for level in export.LEVELS:
        if not src.has(level):
            continue
        for fmt, ext, mime in DOWNLOADS:
            try:
                text = export.render(src, fmt, level)
            except MegaPipeError:               # e.g. a level with only empty segments
                continue
            b64 = base64.b64encode(text.encode("utf-8")).decode("ascii")
            out.append({"level": level, "format": fmt, "name": f"{src.movie_id}-{level}.{ext}",
                        "href": f"data:{mime};charset=utf-8;base64,{b64}"})
    return out


def _add_matrices(data: dict, doc: dict | None, feats: dict | None, starts, ends,
                  matrix_size: int) -> None:
    """Similarity matrices per modality, subtitle cues per shot and the sync matrix."""
    n = len(starts)
    k = _bins(n, matrix_size)
    data["matrix_bin"] = k
    if feats is None:
        data["matrix_note"] = "no feature folder: no similarity matrices"
    elif n < 2:
        data["matrix_note"] = "1 shot: no similarity matrices (they compare 2 shots or more)"
    if feats is not None:
        data["cues"] = [[round(a, 3), round(b, 3), t] for a, b, t in feats["cues"]]
        data["shot_cues"] = shot_cues(starts, ends, feats["cues"])
    if feats is not None and n >= 2:
        for m, vec in feats["vectors"].items():
            sim = similarity_matrix(vec, feats["counts"][m], k)
            data["_float"]["similarity"][m] = sim
            data["similarity"].append({"modality": m, **quantise(sim, symmetric=True)})
    sync = sync_matrix(doc, n)
    if doc is not None and doc.get("sync_matrix") is not None and sync is None:
        data["notes"].append("sync_matrix is not a sentences × shots matrix: not shown")
    if sync is not None:
        sb = bin_columns(sync, k)
        data["_float"]["sync"] = sb
        sentences = (feats or {}).get("sentences")
        data["sync"] = {**quantise(sb, symmetric=False),
                        "sentences": sentences if sentences and len(sentences) == sync.shape[0] else None}


# -------------------------------------------------------------------------------- renderers
def render_html(data: dict) -> str:
    public = {k: v for k, v in data.items() if not k.startswith("_")}
    # JSON inside <script>: "<" escaped so that no "</script>" or "<!--" can end the element
    blob = json.dumps(public, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    blob = blob.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    template = TEMPLATE.read_text(encoding="utf-8")
    if "/*__DATA__*/null" not in template:
        raise MegaPipeError(f"{TEMPLATE} is damaged (no data placeholder): reinstall mega-pipe")
    from html import escape

    title = escape(f"{public['movie']['id']} · mega-pipe report")
    return template.replace("__TITLE__", title).replace("/*__DATA__*/null", blob)


def _fmt_time(t: float) -> str:
    t = int(t)
    return f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}" if t >= 3600 else f"{t // 60}:{t % 60:02d}"


def render_pngs(data: dict) -> dict[str, bytes]:
    """The report's figures as PNG files (matplotlib, Agg): name -> bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figures = {"timeline.png": _timeline_figure(data)}
    if data["scene_boundary_prob"] is not None:
        figures["scene_probability.png"] = _probability_figure(data)
    for m, sim in data["_float"]["similarity"].items():
        figures[f"similarity_{m}.png"] = _similarity_figure(data, m, sim)
    if data["_float"]["sync"] is not None:
        figures["sync_matrix.png"] = _sync_figure(data)
    out = {}
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _shot_axis(data: dict) -> tuple:
    shots = np.asarray(data["shots"], float)
    starts, ends = shots[:, 0], shots[:, 1]
    return starts, ends, data["movie"]["duration_s"] or float(ends.max())


def _time_axis(ax, duration: float) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xlim(0, duration)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_time(v)))
    ax.set_xlabel("time")


def _timeline_figure(data: dict):
    """Acts, scenes, shots and turning points over time."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    starts, ends, dur = _shot_axis(data)
    fig, ax = plt.subplots(figsize=(12, 2.6))
    cmap = plt.get_cmap("tab10")
    ax.vlines(starts, 0.1, 0.9, color="0.35", lw=0.4)
    for k, sc in enumerate(data["scenes"] or []):
        a, b = sc["first_shot"], sc["last_shot"]
        ax.add_patch(Rectangle((starts[a], 1.1), ends[b] - starts[a], 0.8,
                               color="#4a7bd0" if k % 2 == 0 else "#9cc0f5", lw=0))
    for k, act in enumerate(data["acts"] or []):
        if act["empty"]:
            continue
        a, b = act["first_shot"], act["last_shot"]
        ax.add_patch(Rectangle((starts[a], 2.1), ends[b] - starts[a], 0.8, color=cmap(k % 10), lw=0, alpha=.8))
        ax.text((starts[a] + ends[b]) / 2, 2.5, act["label"], ha="center",
                va="center", fontsize=7, clip_on=True)
    for shot, tps in tps_by_shot(data["turning_points"]).items():       # one label per shot
        t = starts[shot]
        ax.axvline(t, color="#d62728", lw=1.2)
        ax.text(t, 3.05, " / ".join(f"TP{tp['index']} {tp['name'] or ''}" for tp in tps),
                rotation=20, fontsize=7, color="#d62728", va="bottom")
    _time_axis(ax, dur)
    ax.set_ylim(0, 3)
    ax.set_yticks([0.5, 1.5, 2.5], ["shots", "scenes", "acts"])
    n_sc = len(data["scenes"] or [])
    ax.set_title(f"{data['movie']['id']}: {len(starts)} shot{'' if len(starts) == 1 else 's'}"
                 + (f", {n_sc} scene{'' if n_sc == 1 else 's'}" if n_sc else ""), loc="left", pad=18)
    return fig


def tps_by_shot(tps: list[dict] | None) -> dict[int, list[dict]]:
    """The turning points grouped by their shot (several can fall on one shot)."""
    out: dict[int, list[dict]] = {}
    for tp in tps or []:
        out.setdefault(tp["shot"], []).append(tp)
    return out


def _probability_figure(data: dict):
    """P(scene ends) as steps: each shot's value held across the shot, jumps at the cuts."""
    import matplotlib.pyplot as plt

    starts, ends, dur = _shot_axis(data)
    p = np.array([np.nan if v is None else v for v in data["scene_boundary_prob"]], float)
    x, y = np.stack([starts, ends], 1).ravel(), np.repeat(p, 2)
    fig, ax = plt.subplots(figsize=(12, 2.6))
    ax.plot(x, y, lw=0.8, color="#1f4e9c")
    ax.fill_between(x, 0, y, color="#1f4e9c", alpha=0.2)
    if data["scene_threshold"] is not None:
        ax.axhline(data["scene_threshold"], color="#d62728", lw=0.8, ls="--", label="threshold")
        ax.legend(loc="upper right", fontsize=7)
    _time_axis(ax, dur)
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(scene ends)")
    return fig


def _similarity_figure(data: dict, m: str, sim: np.ndarray):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    k = data["matrix_bin"]
    q = next(s for s in data["similarity"] if s["modality"] == m)
    fig, ax = plt.subplots(figsize=(6, 5.4))
    side = sim.shape[0] * k                    # axes in shot numbers, also when binned
    im = ax.imshow(sim, cmap="viridis", vmin=q["lo"], vmax=q["hi"], interpolation="nearest",
                   extent=(0, side, side, 0))
    for sc in data["scenes"] or []:
        a, b = sc["first_shot"] // k * k, (sc["last_shot"] // k + 1) * k
        ax.add_patch(Rectangle((a, a), b - a, b - a, fill=False, ec="white", lw=0.5))
    fig.colorbar(im, ax=ax, label="cosine similarity", shrink=0.8)
    unit = "shot" if k == 1 else f"shot (cells of {k} shots)"
    ax.set_xlabel(unit)
    ax.set_ylabel(unit)
    ax.set_title(f"{m}: shot × shot cosine similarity", loc="left")
    return fig


def _sync_figure(data: dict):
    import matplotlib.pyplot as plt

    k, sb = data["matrix_bin"], data["_float"]["sync"]
    fig, ax = plt.subplots(figsize=(10, 4))
    im = ax.imshow(sb, cmap="magma", aspect="auto", interpolation="nearest",
                   vmin=data["sync"]["lo"], vmax=data["sync"]["hi"],
                   extent=(0, sb.shape[1] * k, sb.shape[0] - .5, -.5))
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xlabel("shot" if k == 1 else f"shot (cells of {k} shots)")
    ax.set_ylabel("synopsis sentence")
    ax.set_title("sentence × shot synchronisation", loc="left")
    return fig


# ------------------------------------------------------------------------------ the command
HTML_SUFFIXES = (".html", ".htm")


def write_report(boundaries: Path | None, out: Path, features: Path | None = None,
                 movie: Path | None = None, thumbnails: bool = True, thumbnail_width: int = 160,
                 matrix_size: int = 1000, png_dir: Path | None = None) -> tuple[dict, dict]:
    """``mega-pipe report``: the HTML page of a movie to ``out`` (and its figures as PNG files in
    ``png_dir``). Options and outputs are checked before any work. Returns the gathered data
    and the PNG files written (name -> bytes)."""
    if thumbnail_width < 16:
        raise MegaPipeError("--thumbnail-width must be at least 16 px")
    if matrix_size < 0:
        raise MegaPipeError(f"--matrix-size {matrix_size}: give 0 (one cell per shot) or a "
                            "positive number of cells")
    out = check_output_file(out, suffixes=HTML_SUFFIXES)     # PNG figures: --png DIR
    if png_dir is not None:
        check_output_dir(png_dir, "--png")
    data = gather(boundaries, features, movie, thumbnails, thumbnail_width, matrix_size, out)
    html = render_html(data)
    pngs = render_pngs(data) if png_dir is not None else {}
    warn_replacing(out)
    with atomic_path(out) as tmp:
        tmp.write_text(html, encoding="utf-8")
    for name, blob in pngs.items():
        with atomic_path(Path(png_dir) / name) as tmp:
            tmp.write_bytes(blob)
    for note in data["notes"]:
        log.info("note: %s", note)
    return data, pngs
