"""The feature folder (docs/contract.md): its layout, Parquet schemas, writers and readers.

``mega-pipe extract`` writes one folder per movie; everything downstream reads it. This module is
the only place that spells out the layout (``shots.parquet``, ``samples/<m>.parquet``,
``synopsis.parquet``, ``manifest.json``): every other module goes through :class:`FeatureFolder`.

Each Parquet file carries, in its schema metadata, the contract metadata (``mega_pipe``: kind,
movie id, per-modality provenance) and the **cache key** of the inputs and configuration it was
computed from; a run reuses a file exactly when its key is the key the run would compute (one
cache mechanism for every stage; ``shots.parquet`` carries two: the shot detection's and the
pooling's).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path, write_json
from .errors import MegaPipeError

CONTRACT_VERSION = 1
METADATA_KEY = b"mega_pipe"
COMPRESSION = "zstd"


def vector_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def vector_array(vectors: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def vectors_of(column: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """A fixed_size_list<float32> column as a (N, D) float32 numpy array (zero-copy when possible);
    a null entry (an absent modality, docs/contract.md) is a row of NaN, never zeros."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    d = dim or column.type.list_size
    if not column.null_count:
        return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, d).astype(np.float32, copy=False)
    values = column.values.slice(column.offset * d, len(column) * d)
    out = values.to_numpy(zero_copy_only=False).reshape(-1, d).astype(np.float32)
    out[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return out


CACHE_KEY = b"cache_key"
SYNOPSIS_ONLY_KIND = "synopsis-only"   # manifest.json "kind" of a folder without shots
DETECTION_KEY = b"detection_key"   # shots.parquet: the shot detection's key (CACHE_KEY: pooling)

SHOT_COLUMNS = pa.schema([
    ("movie_id", pa.string()),
    ("shot_idx", pa.int32()),
    ("start_frame", pa.int64()),   # first frame, 0-based, presentation order
    ("end_frame", pa.int64()),     # exclusive
    ("start_s", pa.float64()),     # movie timeline seconds, [start_s, end_s)
    ("end_s", pa.float64()),
])   # then per modality m: m fixed_size_list<float32, D_m> (null when absent), m_count int32
SAMPLE_COLUMNS = pa.schema([("t_start", pa.float64()), ("t_end", pa.float64())])
# then "vector" fixed_size_list<float32, D>, and "text" string for text modalities
SYNOPSIS_COLUMNS = pa.schema([("sentence_idx", pa.int32()), ("text", pa.string())])
# then "vector" fixed_size_list<float32, D>
EMBEDDING_COLUMNS = pa.schema([("movie_id", pa.string()), ("shot_idx", pa.int32()),
                               ("start_frame", pa.int64()), ("end_frame", pa.int64())])
# then per pretrained modality m: m fixed_size_list<float32, C> (null where the shot has no m),
# then "fused" fixed_size_list<float32, C> (never null); `mega-pipe embed`, docs/contract.md
EMBEDDING_FUSED = "fused"


def shots_schema(modality_dims: Mapping[str, int]) -> pa.Schema:
    """The schema of a shots table with these modalities, in this order."""
    fields = list(SHOT_COLUMNS)
    for m, dim in modality_dims.items():
        fields += [pa.field(m, vector_type(int(dim))), pa.field(f"{m}_count", pa.int32())]
    return pa.schema(fields)


def _metadata(kind: str, movie_id: str, modalities: Mapping[str, dict] | None = None,
              cache_key: str | None = None, **keys: str) -> dict:
    meta = {"contract": CONTRACT_VERSION, "movie_id": movie_id, "kind": kind}
    if modalities is not None:
        meta["modalities"] = dict(modalities)
    md = {METADATA_KEY: json.dumps(meta).encode()}
    if cache_key:
        md[CACHE_KEY] = cache_key.encode()
    md.update({name.encode(): key.encode() for name, key in keys.items() if key})
    return md


def read_metadata(path: str | Path) -> dict:
    """The ``mega_pipe`` schema metadata of a contract file."""
    md = pq.read_schema(path).metadata or {}
    return json.loads(md.get(METADATA_KEY, b"{}"))


def cached_key(path: str | Path, name: bytes = CACHE_KEY) -> str | None:
    """The cache key a Parquet file was written with, or None (missing or unreadable file)."""
    if not os.path.exists(path):
        return None
    try:
        md = pq.read_schema(path).metadata or {}
    except Exception:   # a truncated or foreign file is simply not a cache hit
        return None
    key = md.get(name)
    return key.decode() if key else None


def _write(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION)


def samples_table(movie_id: str, modality: str, meta: dict, t_start: np.ndarray,
                  t_end: np.ndarray, vectors: np.ndarray, texts: Sequence[str] | None = None,
                  cache_key: str | None = None) -> pa.Table:
    dim = int(meta["dim"])
    fields = [*SAMPLE_COLUMNS, pa.field("vector", vector_type(dim))]
    cols = [pa.array(np.asarray(t_start, np.float64)), pa.array(np.asarray(t_end, np.float64)),
            vector_array(np.asarray(vectors).reshape(-1, dim), dim)]
    if texts is not None:
        fields.append(pa.field("text", pa.string()))
        cols.append(pa.array(list(texts), pa.string()))
    schema = pa.schema(fields, metadata=_metadata("samples", movie_id, {modality: meta}, cache_key))
    return pa.Table.from_arrays(cols, schema=schema)


def shots_table(movie_id: str, shots: Sequence, pooled: Mapping[str, tuple],
                modality_meta: Mapping[str, dict], absent: Mapping[str, str] | None = None,
                cache_key: str | None = None, detection_key: str | None = None) -> pa.Table:
    """``shots`` are objects with index/start_frame/end_frame/start_s/end_s; ``pooled`` maps a
    modality to (means (S, D), counts (S,)). ``absent`` maps a modality the run asked for but
    the movie lacks to the reason: its column is all null, its count all 0, and its metadata
    entry carries ``"absent": reason`` (docs/contract.md, absent modalities). Columns follow
    the order of ``modality_meta``, which must cover ``pooled`` and ``absent``."""
    absent = dict(absent or {})
    mods = [m for m in modality_meta if m in absent or m in pooled]
    n = len(shots)
    cols = [pa.array([movie_id] * n, pa.string()),
            pa.array([s.index for s in shots], pa.int32()),
            pa.array([s.start_frame for s in shots], pa.int64()),
            pa.array([s.end_frame for s in shots], pa.int64()),
            pa.array([s.start_s for s in shots], pa.float64()),
            pa.array([s.end_s for s in shots], pa.float64())]
    meta = {}
    for m in mods:
        dim = int(modality_meta[m]["dim"])
        if m in absent:
            cols += [pa.nulls(n, vector_type(dim)), pa.array(np.zeros(n, np.int32))]
            meta[m] = {**modality_meta[m], "absent": absent[m]}
        else:
            means, counts = pooled[m]
            cols += [vector_array(means, dim), pa.array(np.asarray(counts, np.int32), pa.int32())]
            meta[m] = modality_meta[m]
    schema = shots_schema({m: modality_meta[m]["dim"] for m in mods}).with_metadata(
        _metadata("shots", movie_id, meta, cache_key, detection_key=detection_key))
    return pa.Table.from_arrays(cols, schema=schema)


def absent_modalities(schema: pa.Schema) -> dict[str, str]:
    """Modality columns the file marks absent (all null, count 0): modality -> reason."""
    meta = json.loads((schema.metadata or {}).get(METADATA_KEY, b"{}"))
    return {m: v["absent"] for m, v in meta.get("modalities", {}).items() if v.get("absent")}


def shot_modalities(schema: pa.Schema) -> list[str]:
    """The modalities a shots table has: fixed-size-list columns with a ``<m>_count`` partner,
    except those marked absent (:func:`absent_modalities`)."""
    names, absent = set(schema.names), absent_modalities(schema)
    return [f.name for f in schema
            if pa.types.is_fixed_size_list(f.type) and f"{f.name}_count" in names
            and f.name not in absent]


def synopsis_table(movie_id: str, sentences: Sequence[str], vectors: np.ndarray, meta: dict,
                   cache_key: str | None = None) -> pa.Table:
    dim = int(meta["dim"])
    schema = pa.schema([*SYNOPSIS_COLUMNS, pa.field("vector", vector_type(dim))],
                       metadata=_metadata("synopsis", movie_id, {"synopsis": meta}, cache_key))
    return pa.Table.from_arrays([pa.array(np.arange(len(sentences), dtype=np.int32)),
                                 pa.array(list(sentences), pa.string()),
                                 vector_array(vectors, dim)], schema=schema)


def embeddings_table(movie_id: str, times: Mapping[str, np.ndarray], vectors: Mapping[str, np.ndarray],
                     have: Mapping[str, np.ndarray], fused: np.ndarray, meta: dict,
                     cache_key: str) -> pa.Table:
    """``embeddings.parquet`` (``mega-pipe embed``): per shot its ``shot_idx`` and frames (from
    ``times``, :meth:`FeatureFolder.read_shot_times`), per modality of the pretrained model its
    contextual embedding (``vectors[m]`` (S, C); null where ``have[m]`` is False) and the fused
    one. The column set depends only on the model (``meta["modalities"]``), so one catalogue
    embedded with one checkpoint has one schema."""
    width = int(meta["width"])
    n = len(times["shot_idx"])
    cols = [pa.array([movie_id] * n, pa.string()), pa.array(times["shot_idx"], pa.int32()),
            pa.array(times["start_frame"], pa.int64()), pa.array(times["end_frame"], pa.int64())]
    fields = list(EMBEDDING_COLUMNS)
    for m in meta["modalities"]:
        flat = pa.array(np.ascontiguousarray(vectors[m], np.float32).reshape(-1), pa.float32())
        missing = pa.array(~np.asarray(have[m], bool))
        cols.append(pa.FixedSizeListArray.from_arrays(flat, width, mask=missing))
        fields.append(pa.field(m, vector_type(width)))
    cols.append(vector_array(fused, width))
    fields.append(pa.field(EMBEDDING_FUSED, vector_type(width)))
    schema = pa.schema(fields, metadata=_metadata("embeddings", movie_id, None, cache_key,
                                                  embeddings=json.dumps(meta)))
    return pa.Table.from_arrays(cols, schema=schema)


class FeatureFolder:
    """One movie's feature folder: ``OUT/<movie_id>/`` (docs/contract.md).

    ``manifest.json`` is written last: a folder without it is incomplete and is never read."""

    SHOTS = "shots.parquet"
    SYNOPSIS = "synopsis.parquet"
    MANIFEST = "manifest.json"
    SAMPLES = "samples"
    EMBEDDINGS = "embeddings.parquet"   # optional, `mega-pipe embed` (not in manifest.json's outputs)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FeatureFolder({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    # -- layout ------------------------------------------------------------------------------
    @property
    def shots_path(self) -> Path:
        return self.path / self.SHOTS

    @property
    def synopsis_path(self) -> Path:
        return self.path / self.SYNOPSIS

    @property
    def manifest_path(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def embeddings_path(self) -> Path:
        return self.path / self.EMBEDDINGS

    def samples_path(self, modality: str) -> Path:
        return self.path / self.SAMPLES / f"{modality}.parquet"

    def outputs(self, modalities: Sequence[str], synopsis: bool) -> list[str]:
        """The files of a folder with these modalities, relative to it (the manifest's list)."""
        return ([self.SHOTS] + [f"{self.SAMPLES}/{m}.parquet" for m in modalities]
                + ([self.SYNOPSIS] if synopsis else []))

    # -- state -------------------------------------------------------------------------------
    def problem(self, *, synopsis: bool = False, shots: bool = True) -> str | None:
        """Why the folder cannot be read (missing, incomplete, no shots when they are needed,
        no synopsis when one is needed), or None. ``shots=False`` accepts a synopsis-only
        folder (:meth:`write_synopsis_only`)."""
        if not self.path.is_dir():
            return f"feature folder {self.path} does not exist"
        if not self.manifest_path.is_file():
            return f"feature folder {self.path} is incomplete (no {self.MANIFEST}: the extract " \
                   "run failed or is still running)"
        if shots and not self.shots_path.is_file():
            if self.is_synopsis_only:
                return f"feature folder {self.path} holds a synopsis only (no {self.SHOTS}); " \
                       "it serves synopsis training, not shot-level tasks"
            return f"feature folder {self.path} has no {self.SHOTS}"
        if synopsis and not self.synopsis_path.is_file():
            return f"feature folder {self.path} has no {self.SYNOPSIS} (extract with --synopsis)"
        return None

    @property
    def is_complete(self) -> bool:
        return self.problem() is None

    @property
    def is_synopsis_only(self) -> bool:
        """A folder written by :meth:`write_synopsis_only`: synopsis.parquet, no shots."""
        return (self.read_manifest() or {}).get("kind") == SYNOPSIS_ONLY_KIND

    def is_complete_synopsis(self, cache_key: str) -> bool:
        """The folder is complete and its synopsis.parquet was written with ``cache_key``."""
        return (self.manifest_path.is_file() and self.synopsis_path.is_file()
                and self.cached_key(self.SYNOPSIS) == cache_key)

    def require_complete(self, *, synopsis: bool = False, shots: bool = True) -> "FeatureFolder":
        problem = self.problem(synopsis=synopsis, shots=shots)
        if problem:
            raise MegaPipeError(problem)
        return self

    def n_shots(self) -> int:
        """Shot count, from the Parquet footer only."""
        return pq.ParquetFile(self.shots_path).metadata.num_rows

    def n_sentences(self) -> int:
        return pq.ParquetFile(self.synopsis_path).metadata.num_rows

    def cached_key(self, output: str, name: bytes = CACHE_KEY) -> str | None:
        """The cache key ``output`` (a path relative to the folder) was written with."""
        return cached_key(self.path / output, name)

    # -- readers -----------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        """The run manifest, or None when it is missing or unreadable (incomplete folder)."""
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None

    @property
    def movie_id(self) -> str:
        return (self.read_manifest() or {}).get("movie_id", self.path.name)

    def shots_schema(self) -> pa.Schema:
        return pq.read_schema(self.shots_path)

    def modalities(self) -> list[str]:
        """The modalities the movie has (absent ones excluded), in file order; schema only."""
        return shot_modalities(self.shots_schema())

    def absent_modalities(self) -> dict[str, str]:
        return absent_modalities(self.shots_schema())

    def modality_meta(self) -> dict[str, dict]:
        """Per-modality provenance (dim, model_id, weights_sha256, sampling, absent?)."""
        return read_metadata(self.shots_path).get("modalities", {})

    def read_shots(self, columns: Sequence[str] | None = None) -> pa.Table:
        return pq.read_table(self.shots_path, columns=list(columns) if columns else None)

    def read_shot_times(self) -> dict[str, np.ndarray]:
        """``shot_idx``, ``start_frame``, ``end_frame``, ``start_s``, ``end_s`` as arrays."""
        t = self.read_shots(SHOT_COLUMNS.names[1:])
        return {name: t[name].to_numpy() for name in t.column_names}

    def read_samples(self, modality: str) -> dict:
        """``{"t_start", "t_end", "vectors", "text"?}`` as numpy arrays (text as a list)."""
        t = pq.read_table(self.samples_path(modality))
        out = {"t_start": t["t_start"].to_numpy(), "t_end": t["t_end"].to_numpy(),
               "vectors": vectors_of(t["vector"])}
        if "text" in t.column_names:
            out["text"] = t["text"].to_pylist()
        return out

    def samples_meta(self, modality: str) -> dict:
        return read_metadata(self.samples_path(modality)).get("modalities", {}).get(modality, {})

    def read_synopsis(self) -> tuple[list[str], np.ndarray]:
        """The synopsis sentences and their (n, D) vectors."""
        t = pq.read_table(self.synopsis_path, columns=["text", "vector"])
        return t["text"].to_pylist(), vectors_of(t["vector"])

    def read_embeddings(self, columns: Sequence[str] | None = None) -> pa.Table:
        """``embeddings.parquet`` (``mega-pipe embed``); MegaPipeError if the folder has none."""
        if not self.embeddings_path.is_file():
            raise MegaPipeError(f"{self.path} has no {self.EMBEDDINGS} (run `mega-pipe embed`)")
        return pq.read_table(self.embeddings_path, columns=list(columns) if columns else None)

    def embeddings_meta(self) -> dict:
        """What produced ``embeddings.parquet``: checkpoint, width, modalities, sequence length."""
        md = pq.read_schema(self.embeddings_path).metadata or {}
        return json.loads(md.get(b"embeddings", b"{}"))

    # -- writers (each atomic) ---------------------------------------------------------------
    def write_samples(self, table: pa.Table, modality: str) -> None:
        _write(self.samples_path(modality), table)

    def write_shots(self, table: pa.Table) -> None:
        _write(self.shots_path, table)

    def write_synopsis(self, table: pa.Table) -> None:
        _write(self.synopsis_path, table)

    def write_embeddings(self, table: pa.Table) -> None:
        """``embeddings.parquet``, atomically (temp file + rename: a crash leaves the old file or
        none; :meth:`stale_embedding_temps` finds what a killed writer left)."""
        _write(self.embeddings_path, table)

    def stale_embedding_temps(self) -> list[Path]:
        """Temporary files of an ``embeddings.parquet`` write that was killed (never read)."""
        return sorted(self.path.glob(f".{self.EMBEDDINGS}.*.tmp"))

    def write_manifest(self, manifest: dict) -> None:
        """Write the run manifest: last, when every other file of the run is in place."""
        write_json(self.manifest_path, manifest)

    def write_synopsis_only(self, table: pa.Table, manifest: dict) -> None:
        """A **synopsis-only** folder (``mega-pipe manifest tripod --synopses-only``): the
        synopsis table, then ``manifest.json`` (``manifest`` plus the contract version, the
        kind and the output list), so a crash leaves an incomplete folder, never a wrong one."""
        self.invalidate()
        self.write_synopsis(table)
        self.write_manifest({"contract": CONTRACT_VERSION, **manifest, "kind": SYNOPSIS_ONLY_KIND,
                             "outputs": [self.SYNOPSIS]})

    def invalidate(self) -> None:
        """Mark the folder incomplete (before its files change)."""
        self.manifest_path.unlink(missing_ok=True)
