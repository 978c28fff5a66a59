"""Zero-shot text-to-moment search over feature folders (``mega-pipe search``, docs/moments.md).

A query is encoded by the CLIP *text* tower of the same weights entry that wrote the folders'
``clip`` samples (the entry named in their metadata, so text and image vectors share CLIP's joint
space; its tokenizer and context length come with the entry). Its cosine with every per-second
image vector (docs/contract.md, ``samples/clip.parquet``) is standardised over the searched
catalogue (z-scores), and candidate moments are scored with the scan statistic
``sum(z) / sqrt(n)`` over their ``n`` seconds — the log-likelihood-ratio statistic of a mean shift
in unit-variance noise, which favours windows whose raised similarity is concentrated rather than
the single best second. Candidates are sliding windows of 1, 2, 4, ... s (stride half a window),
each also tried with its start, its end, or both moved to the nearest shot boundary (when within
a quarter of its length), and whole runs of 1-3 shots; greedy non-maximum suppression (temporal IoU) keeps the best
of overlapping candidates, per movie and then over the catalogue.

A catalogue of ``INDEX_MIN_MOVIES`` or more movies is searched through a FAISS inner-product index
of all its per-second vectors, built once and stored under a key made of every movie's samples
cache key (content-keyed, written atomically; rebuilt only when a movie's features change): the
index returns the 512 best seconds, and only the movies holding the best of them (16, or twice
``top_k``) are scored. The catalogue mean
and covariance of the vectors, stored beside it, give each query's z-score exactly without scoring
every second.
"""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..extractors.entry import WeightsEntry
from ..extractors.registry import REGISTRY, extractor_class, locate_weights
from ..extractors.weights import verify_file
from ..manifests.atomic import atomic_path, warn_replacing, write_text
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder
from .inputs import VIDEO_SUFFIXES
from .report import make_thumbnails

log = logging.getLogger(__name__)

MODALITY = "clip"
INDEX_MIN_MOVIES = 20
INDEX_VERSION = 1
INDEX_HITS = 512          # best seconds the index returns
INDEX_MOVIES = 16         # movies scored at least (those holding the best of those seconds)
SCALES_S = (1, 2, 4, 8, 16, 32, 64, 128)


# -- the text tower ----------------------------------------------------------------------------------
class TextEncoder:
    """The CLIP text tower of one weights entry, with that entry's tokenizer.

    The paper entry (OpenAI ViT-B/32) uses open_clip's byte-pair tokenizer with its 49408-token
    vocabulary and context 77. The tiny entry's text tower is the same class with a vocabulary of
    ``V`` tokens and context 8: its tokenizer is the same byte-pair encoding with every id folded
    into ``1 .. V-3`` (``1 + id mod (V-3)``) and start/end tokens ``V-2``/``V-1``, so the end
    token is the largest id, which is where CLIP reads the sentence vector (docs/moments.md)."""

    def __init__(self, entry: WeightsEntry, weights_dirs: Sequence[Path] = ()):
        import torch  # noqa: F401  (the tower needs it; imported on first use)
        from open_clip.tokenizer import SimpleTokenizer

        if entry.modality != MODALITY:
            raise MegaPipeError(f"{entry.name} is not a CLIP entry")
        self.entry = entry
        text_cfg = entry.arch["text_cfg"]
        self.context = int(text_cfg["context_length"])
        self.vocab = int(text_cfg["vocab_size"])
        self._bpe = SimpleTokenizer()
        base = extractor_class(MODALITY)

        class _Full(base):  # type: ignore[misc, valid-type]
            def _feature_model(self, model):   # keep both towers
                return model

        path = digest = None
        if entry.needs_file:
            path = locate_weights({MODALITY: entry}, weights_dirs=weights_dirs, offline=True)[MODALITY]
            digest = verify_file(entry, path)
        self._model = _Full(entry, path, digest).model
        self.dim = entry.dim

    def token_ids(self, query: str) -> list[int]:
        """The token ids of ``query`` with start and end tokens; raises when it is empty or longer
        than the context."""
        if not query or not query.strip():
            raise MegaPipeError("the query is empty")
        ids = self._bpe.encode(query)
        if self.vocab == len(self._bpe.encoder):
            sot, eot = self._bpe.sot_token_id, self._bpe.eot_token_id
        else:
            ids = [1 + i % (self.vocab - 3) for i in ids]
            sot, eot = self.vocab - 2, self.vocab - 1
        if len(ids) + 2 > self.context:
            raise MegaPipeError(f"the query is {len(ids)} tokens long; the text encoder of {self.entry.name} "
                                f"takes at most {self.context - 2} (context length {self.context}): "
                                "shorten it")
        return [sot, *ids, eot]

    def _run(self, queries: Sequence[str]):
        import torch

        ids = [self.token_ids(q) for q in queries]
        tokens = torch.zeros((len(ids), self.context), dtype=torch.long)
        for i, row in enumerate(ids):
            tokens[i, :len(row)] = torch.tensor(row)
        m = self._model
        with torch.inference_mode():
            x = m.token_embedding(tokens) + m.positional_embedding
            x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
            x = x @ m.text_projection if not isinstance(m.text_projection, torch.nn.Linear) \
                else m.text_projection(x)
        return ids, x

    def encode(self, queries: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence vectors (n, dim): the end token's output, projected (CLIP)."""
        ids, x = self._run(queries)
        out = np.stack([x[i, len(row) - 1].numpy() for i, row in enumerate(ids)])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def encode_tokens(self, query: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-token vectors of the words (start/end tokens dropped), their ids, and the
        sentence vector: the text features a moment model reads (docs/moments.md)."""
        ids, x = self._run([query])
        row = ids[0]
        words = x[0, 1:len(row) - 1].numpy().astype(np.float32)
        sent = x[0, len(row) - 1].numpy()
        return words, np.asarray(row[1:-1], np.int64), (sent / np.linalg.norm(sent)).astype(np.float32)


def text_encoder_for(model_id: str, weights_dirs: Sequence[Path] = ()) -> TextEncoder:
    if model_id not in REGISTRY:
        raise MegaPipeError(f"the clip features were made by {model_id!r}, which is not in the weights "
                            "registry (`mega-pipe weights list`)")
    return TextEncoder(REGISTRY[model_id], weights_dirs)


# -- the catalogue -----------------------------------------------------------------------------------
@dataclass
class Movie:
    movie_id: str
    folder: Path
    t_start: np.ndarray
    t_end: np.ndarray
    shot_bounds: np.ndarray       # shot start times after the first, and the end
    duration: float
    vectors: np.ndarray | None = None


@dataclass
class Catalogue:
    movies: list[Movie]
    model_id: str
    key: str
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))


def feature_folders(paths: Sequence[Path]) -> list[FeatureFolder]:
    """Each path is a feature folder (it has manifest.json) or a folder of them."""
    out: list[FeatureFolder] = []
    for p in paths:
        f = FeatureFolder(p)
        if f.manifest_path.is_file():
            out.append(f)
            continue
        if Path(p).is_file():
            if Path(p).suffix.lower() in VIDEO_SUFFIXES:
                raise MegaPipeError(f"{p} is a video file, not a feature folder: extract it first "
                                    f"(`mega-pipe extract {p} --out OUT`), then search OUT/")
            raise MegaPipeError(f"{p} is a file, not a feature folder (search reads the folders "
                                "`mega-pipe extract` writes)")
        if not Path(p).is_dir():
            raise MegaPipeError(f"{p}: no such feature folder")
        kids = [FeatureFolder(c) for c in sorted(Path(p).iterdir())
                if c.is_dir() and not c.name.startswith(".") and (c / FeatureFolder.MANIFEST).is_file()]
        if not kids:
            raise MegaPipeError(f"{p} is neither a feature folder nor a folder of feature folders "
                                "(no manifest.json in it or its sub-folders)")
        out += kids
    return out


def _clip_meta(f: FeatureFolder) -> dict:
    f.require_complete()
    if MODALITY not in f.modalities() or not f.samples_path(MODALITY).is_file():
        raise MegaPipeError(f"feature folder {f.path} has no clip features (search needs the per-second "
                            "clip vectors: extract with the clip modality, e.g. --modalities clip,...)")
    return f.samples_meta(MODALITY)


def open_catalogue(paths: Sequence[Path], load_vectors: bool) -> Catalogue:
    folders = feature_folders(paths)
    metas = [_clip_meta(f) for f in folders]
    models = {m.get("model_id") for m in metas}
    if len(models) != 1:
        raise MegaPipeError(f"the folders' clip features come from different models ({', '.join(map(str, models))}); "
                            "search one model's folders at a time")
    parts = []
    movies = []
    for f in folders:
        samples = f.read_samples(MODALITY) if load_vectors else None
        if samples is None:
            import pyarrow.parquet as pq
            t = pq.read_table(f.samples_path(MODALITY), columns=["t_start", "t_end"])
            samples = {"t_start": t["t_start"].to_numpy(), "t_end": t["t_end"].to_numpy()}
        times = f.read_shot_times()
        duration = float(max(samples["t_end"].max() if len(samples["t_end"]) else 0.0,
                             times["end_s"].max() if len(times["end_s"]) else 0.0))
        bounds = np.concatenate([times["start_s"][1:], [duration]]).astype(float)
        movies.append(Movie(f.movie_id, f.path, samples["t_start"], samples["t_end"], bounds, duration,
                            samples.get("vectors")))
        parts.append([f.movie_id, f.cached_key(f"{FeatureFolder.SAMPLES}/{MODALITY}.parquet"),
                      f.cached_key(FeatureFolder.SHOTS)])
    ids = [m.movie_id for m in movies]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise MegaPipeError(f"movie id {dup!r} is in the catalogue twice")
    key = hashlib.sha256(json.dumps([INDEX_VERSION, models.pop(), parts]).encode()).hexdigest()[:32]
    cat = Catalogue(movies, metas[0]["model_id"], key)
    cat.offsets = np.concatenate([[0], np.cumsum([len(m.t_start) for m in movies])]).astype(np.int64)
    return cat


# -- the index -----------------------------------------------------------------------------------------
def default_index_dir(paths: Sequence[Path]) -> Path:
    """A single folder of feature folders keeps its index in ``.search-index/`` inside it;
    otherwise the user's cache (``$XDG_CACHE_HOME/mega-pipe/search-index``)."""
    if len(paths) == 1 and not FeatureFolder(paths[0]).manifest_path.is_file():
        return Path(paths[0]) / ".search-index"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mega-pipe" / "search-index"


class VectorIndex:
    """FAISS inner-product index of a catalogue's per-second vectors, plus the catalogue mean and
    covariance (files ``<key>.faiss`` and ``<key>.npz``)."""

    def __init__(self, index: Any, mean: np.ndarray, cov: np.ndarray, vectors: np.ndarray):
        self.index, self.mean, self.cov, self.vectors = index, mean, cov, vectors

    @staticmethod
    def paths(folder: Path, key: str) -> tuple[Path, Path]:
        return folder / f"{key}.faiss", folder / f"{key}.npz"

    @classmethod
    def load_or_build(cls, cat: Catalogue, folder: Path) -> tuple[VectorIndex, bool]:
        """The catalogue's index, read when its key's files exist, else built and written.
        Returns (index, reused)."""
        import faiss

        fi, fn = cls.paths(folder, cat.key)
        if fi.is_file() and fn.is_file():
            with np.load(fn) as z:
                return cls(faiss.read_index(str(fi)), z["mean"], z["cov"], z["vectors"]), True
        vectors = np.ascontiguousarray(np.concatenate(
            [FeatureFolder(m.folder).read_samples(MODALITY)["vectors"] for m in cat.movies]), np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        mean = vectors.mean(0)
        cov = np.cov(vectors.T.astype(np.float64)) if len(vectors) > 1 else np.zeros((vectors.shape[1],) * 2)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(fn) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, mean=mean, cov=cov, vectors=vectors)
            with atomic_path(fi) as tmp:
                faiss.write_index(index, str(tmp))
        except OSError as e:
            raise MegaPipeError(f"cannot write the search index in {folder} ({e.strerror or e}); "
                                "give --index-dir") from None
        return cls(index, mean, cov, vectors), False


# -- moments from per-second scores ---------------------------------------------------------------------
def temporal_iou(a: tuple[float, float], b: np.ndarray) -> np.ndarray:
    inter = np.clip(np.minimum(a[1], b[:, 1]) - np.maximum(a[0], b[:, 0]), 0, None)
    union = (a[1] - a[0]) + (b[:, 1] - b[:, 0]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _iou(s1: float, e1: float, s2: float, e2: float) -> float:
    inter = min(e1, e2) - max(s1, s2)
    if inter <= 0:
        return 0.0
    return inter / ((e1 - s1) + (e2 - s2) - inter)


def nms(cands: np.ndarray, iou: float, top_k: int) -> np.ndarray:
    """Greedy non-maximum suppression of rows ``[start, end, score]``: best first, a candidate is
    dropped when its IoU with a kept one exceeds ``iou``."""
    order = np.argsort(-cands[:, 2], kind="stable")
    return cands[_nms_order(cands, order, iou, top_k)]


def _nms_order(cands: np.ndarray, order: np.ndarray, iou: float, top_k: int) -> list[int]:
    starts, ends = cands[order, 0].tolist(), cands[order, 1].tolist()
    kept: list[int] = []
    spans: list[tuple[float, float]] = []
    for j, i in enumerate(order.tolist()):   # plain floats: usually stops after a few candidates
        s, e = starts[j], ends[j]
        if any(_iou(s, e, ks, ke) > iou for ks, ke in spans):
            continue
        kept.append(i)
        spans.append((s, e))
        if len(kept) >= top_k:
            break
    return kept


def nms_fast(cands: np.ndarray, iou: float, top_k: int, pool: int = 256) -> np.ndarray:
    """:func:`nms` on the ``pool`` best candidates first (the same result whenever those hold
    ``top_k`` survivors, which is checked; else on all of them)."""
    if len(cands) <= pool:
        return nms(cands, iou, top_k)
    best = np.argpartition(-cands[:, 2], pool)[:pool]
    best = best[np.lexsort((best, -cands[best, 2]))]         # by score, then index (stable)
    kept = _nms_order(cands, best, iou, top_k)
    return cands[kept] if len(kept) >= top_k else nms(cands, iou, top_k)


def _nearest(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The element of ``sorted_values`` nearest to each ``x``."""
    i = np.clip(np.searchsorted(sorted_values, x), 1, len(sorted_values) - 1)
    lo, hi = sorted_values[i - 1], sorted_values[i]
    return np.where(x - lo <= hi - x, lo, hi)


def propose_moments(z: np.ndarray, t_start: np.ndarray, t_end: np.ndarray, shot_bounds: np.ndarray,
                    duration: float, *, nms_iou: float = 0.5, top_k: int = 10,
                    scales: Sequence[float] = SCALES_S) -> np.ndarray:
    """Ranked moments ``[start, end, score]`` (seconds) of one movie from per-sample z-scores
    (samples ``[t_start, t_end)`` in time order): the candidates of the module docstring scored by
    ``sum(z) / sqrt(n)`` over the samples whose middle lies inside, then NMS."""
    n = len(z)
    if n == 0:
        return np.zeros((0, 3))
    mids = (t_start + t_end) / 2
    csum = np.concatenate([[0.0], np.cumsum(z)])
    step = float(np.median(t_end - t_start)) or 1.0
    starts, ends = [], []
    for s in scales:
        w = max(1, round(s / step))
        if w > n:
            break
        idx = np.arange(0, n - w + 1, max(1, w // 2))
        if idx[-1] != n - w:
            idx = np.append(idx, n - w)
        starts.append(t_start[idx])
        ends.append(t_end[idx + w - 1])
    st, en = np.concatenate(starts), np.concatenate(ends)
    bounds = np.concatenate([[0.0], shot_bounds])
    if len(bounds) > 2:      # snap ends to shot boundaries within a quarter of the length
        tol = np.maximum((en - st) / 4, step / 2)
        sb, eb = _nearest(bounds, st), _nearest(bounds, en)
        sb = np.where(np.abs(sb - st) <= tol, sb, st)
        eb = np.where(np.abs(eb - en) <= tol, eb, en)
        shots_s, shots_e = [sb, st, sb], [eb, eb, en]     # both ends, the end only, the start only
        for k in (1, 2, 3):
            if len(bounds) > k:
                shots_s.append(bounds[:-k])
                shots_e.append(bounds[k:])
        st = np.concatenate([st, *shots_s])
        en = np.concatenate([en, *shots_e])
    st, en = np.clip(st, 0, duration), np.clip(en, 0, duration)
    i0 = np.searchsorted(mids, st, side="left")
    i1 = np.searchsorted(mids, en, side="left")
    keep = (i1 > i0) & (en > st)
    st, en, i0, i1 = st[keep], en[keep], i0[keep], i1[keep]
    score = (csum[i1] - csum[i0]) / np.sqrt(i1 - i0)
    return nms_fast(np.stack([st, en, score], 1), nms_iou, top_k)


# -- search -------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    query: str
    moments: list[dict]
    seconds: float
    index: str          # "none", "built", "reused"


class Searcher:
    """A catalogue opened once, answering many queries (the text tower is built once)."""

    def __init__(self, paths: Sequence[Path], *, index: str = "auto", index_dir: Path | None = None,
                 weights_dirs: Sequence[Path] = (), encoder: TextEncoder | None = None):
        if index not in ("auto", "always", "never"):
            raise MegaPipeError(f"--index must be auto, always or never, got {index!r}")
        paths = [Path(p) for p in paths]
        if not paths:
            raise MegaPipeError("search: give at least one feature folder or folder of them")
        use_index = index == "always" or (index == "auto" and len(feature_folders(paths)) >= INDEX_MIN_MOVIES)
        self.cat = open_catalogue(paths, load_vectors=not use_index)
        self.encoder = encoder or text_encoder_for(self.cat.model_id, weights_dirs)
        if self.encoder.entry.name != self.cat.model_id:
            raise MegaPipeError(f"the text encoder is {self.encoder.entry.name}, the features are "
                                f"{self.cat.model_id}'s")
        # tiny models have random, untrained weights: said once, with the first results
        self.untrained = self.encoder.entry.model_set == "tiny"
        self.index: VectorIndex | None = None
        self.index_state = "none"
        if use_index:
            folder = index_dir or default_index_dir(paths)
            self.index, reused = VectorIndex.load_or_build(self.cat, folder)
            self.index_state = "reused" if reused else "built"
            self.index_path = VectorIndex.paths(folder, self.cat.key)[0]
            for m, a, b in zip(self.cat.movies, self.cat.offsets[:-1], self.cat.offsets[1:]):
                m.vectors = self.index.vectors[a:b]

    def search(self, query: str, *, top_k: int = 10, per_movie: int = 3, nms_iou: float = 0.5) -> SearchResult:
        if self.untrained:
            self.untrained = False
            log.warning("the clip features come from %s, a tiny model with random, untrained "
                        "weights (--models tiny): the ranking is meaningless; extract with "
                        "--models paper to search for real", self.cat.model_id)
        t0 = time.perf_counter()
        q = self.encoder.encode([query])[0]
        return self.search_vector(query, q, top_k=top_k, per_movie=per_movie, nms_iou=nms_iou, t0=t0)

    def search_vector(self, query: str, q: np.ndarray, *, top_k: int = 10, per_movie: int = 3,
                      nms_iou: float = 0.5, t0: float | None = None) -> SearchResult:
        t0 = time.perf_counter() if t0 is None else t0
        if top_k < 1 or per_movie < 1:
            raise MegaPipeError("--top-k and --per-movie must be at least 1")
        movies = self.cat.movies
        if self.index is not None:
            mu = float(q @ self.index.mean)
            sd = math.sqrt(max(float(q @ self.index.cov @ q), 1e-12))
            k = min(INDEX_HITS, self.index.index.ntotal)
            _, hits = self.index.index.search(q[None].astype(np.float32), k)
            owners = np.searchsorted(self.cat.offsets, hits[0][hits[0] >= 0], side="right") - 1
            first = dict.fromkeys(owners.tolist())          # movies in the order of their best second
            movies = [movies[i] for i in list(first)[:max(2 * top_k, INDEX_MOVIES)]]
            sims = {m.movie_id: m.vectors @ q for m in movies}
        else:
            sims = {m.movie_id: m.vectors @ q for m in movies}
            allv = np.concatenate(list(sims.values()))
            mu, sd = float(allv.mean()), float(allv.std()) or 1.0
        rows = []
        for m in movies:
            s = sims[m.movie_id]
            for st, en, sc in propose_moments((s - mu) / sd, m.t_start, m.t_end, m.shot_bounds, m.duration,
                                              nms_iou=nms_iou, top_k=per_movie):
                inside = (m.t_start + m.t_end) / 2
                sel = (inside >= st) & (inside < en)
                rows.append({"movie": m.movie_id, "start": round(float(st), 3), "end": round(float(en), 3),
                             "score": round(float(sc), 4),
                             "similarity": round(float(s[sel].mean()) if sel.any() else float("nan"), 4),
                             "folder": str(m.folder)})
        rows.sort(key=lambda r: -r["score"])
        rows = rows[:top_k]
        for i, r in enumerate(rows, 1):
            r["rank"] = i
        return SearchResult(query, rows, time.perf_counter() - t0, self.index_state)


def format_results(results: Sequence[SearchResult], fmt: str) -> str:
    cols = ["query", "rank", "movie", "start", "end", "score", "similarity", "folder"]
    if fmt == "jsonl":
        return "".join(json.dumps({"query": r.query, **{c: m[c] for c in cols[1:]}}) + "\n"
                       for r in results for m in r.moments)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in results:
            for m in r.moments:
                w.writerow([r.query] + [m[c] for c in cols[1:]])
        return buf.getvalue()
    raise MegaPipeError(f"--format must be jsonl or csv, got {fmt!r}")


def write_results(path: Path, text: str) -> None:
    warn_replacing(path)
    write_text(path, text)


def write_html(results: Sequence[SearchResult], path: Path, width: int = 160) -> int:
    """A self-contained HTML page of the moments, each with the frame at its middle (from the
    movie file the folder's manifest names, as ``report`` does; a movie that is not there gets no
    picture and a warning). Returns how many thumbnails were made."""
    by_movie: dict[str, list[tuple[int, float]]] = {}
    cells: list[tuple[SearchResult, dict]] = [(r, m) for r in results for m in r.moments]
    for k, (_, m) in enumerate(cells):
        by_movie.setdefault(m["folder"], []).append((k, (m["start"] + m["end"]) / 2))
    thumbs: list[str | None] = [None] * len(cells)
    for folder, items in by_movie.items():
        source = ((FeatureFolder(folder).read_manifest() or {}).get("source") or {}).get("path")
        if not source or not Path(source).is_file():
            log.warning("no thumbnails for %s: its movie file %s is not there", folder, source)
            continue
        for (k, _), jpg in zip(items, make_thumbnails(Path(source), [t for _, t in items], width)):
            thumbs[k] = jpg
    rows = []
    for (r, m), jpg in zip(cells, thumbs):
        img = f'<img src="data:image/jpeg;base64,{jpg}" width="{width}">' if jpg else ""
        rows.append(f"<tr><td>{html.escape(r.query)}</td><td>{m['rank']}</td><td>{html.escape(m['movie'])}</td>"
                    f"<td>{m['start']:.1f}–{m['end']:.1f} s</td><td>{m['score']:.3f}</td><td>{img}</td></tr>")
    page = ("<!doctype html><meta charset='utf-8'><title>mega-pipe search</title>"
            "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd}</style>"
            "<table><tr><th>query</th><th>rank</th><th>movie</th><th>moment</th><th>score</th>"
            "<th>middle frame</th></tr>" + "".join(rows) + "</table>\n")
    warn_replacing(path)
    write_text(path, page)
    return sum(t is not None for t in thumbs)
