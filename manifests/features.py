"""The Parquet feature contract (docs/contract.md): schemas, writers and readers.

Everything that writes or reads ``shots.parquet``, ``samples/<m>.parquet`` or
``synopsis.parquet`` goes through this module, so the contract lives in one place.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path

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


def _metadata(kind: str, movie_id: str, modalities: Mapping[str, dict] | None = None,
              cache_key: str | None = None) -> dict:
    meta = {"contract": CONTRACT_VERSION, "movie_id": movie_id, "kind": kind}
    if modalities is not None:
        meta["modalities"] = dict(modalities)
    md = {METADATA_KEY: json.dumps(meta).encode()}
    if cache_key:
        md[b"cache_key"] = cache_key.encode()
    return md


def read_metadata(path: str | Path) -> dict:
    """The ``mega_pipe`` schema metadata of a contract file."""
    md = pq.read_schema(path).metadata or {}
    return json.loads(md.get(METADATA_KEY, b"{}"))


def _write(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=COMPRESSION)


def samples_table(movie_id: str, modality: str, meta: dict, t_start: np.ndarray,
                  t_end: np.ndarray, vectors: np.ndarray, texts: Sequence[str] | None = None,
                  cache_key: str | None = None) -> pa.Table:
    dim = int(meta["dim"])
    cols = {
        "t_start": pa.array(np.asarray(t_start, np.float64)),
        "t_end": pa.array(np.asarray(t_end, np.float64)),
        "vector": vector_array(np.asarray(vectors).reshape(-1, dim), dim),
    }
    if texts is not None:
        cols["text"] = pa.array(list(texts), pa.string())
    table = pa.table(cols)
    return table.replace_schema_metadata(
        _metadata("samples", movie_id, {modality: meta}, cache_key))


def write_samples(path: Path, table: pa.Table) -> None:
    _write(path, table)


def read_samples(path: str | Path) -> dict:
    """``{"t_start", "t_end", "vectors", "text"?}`` as numpy arrays (text as a list)."""
    t = pq.read_table(path)
    out = {"t_start": t["t_start"].to_numpy(), "t_end": t["t_end"].to_numpy(),
           "vectors": vectors_of(t["vector"])}
    if "text" in t.column_names:
        out["text"] = t["text"].to_pylist()
    return out


def write_shots(path: Path, movie_id: str, shots: Sequence, pooled: Mapping[str, tuple],
                modality_meta: Mapping[str, dict], cache_key: str | None = None,
                absent: Mapping[str, str] | None = None) -> None:
    """``shots`` are objects with index/start_frame/end_frame/start_s/end_s; ``pooled`` maps a
    modality to (means (S, D), counts (S,)). ``absent`` maps a modality the run asked for but
    the movie lacks to the reason: its column is all null, its count all 0, and its metadata
    entry carries ``"absent": reason`` (docs/contract.md, absent modalities). Columns follow
    the order of ``modality_meta``, which must cover ``pooled`` and ``absent``."""
    absent = dict(absent or {})
    n = len(shots)
    cols: dict[str, pa.Array] = {
        "movie_id": pa.array([movie_id] * n, pa.string()),
        "shot_idx": pa.array([s.index for s in shots], pa.int32()),
        "start_frame": pa.array([s.start_frame for s in shots], pa.int64()),
        "end_frame": pa.array([s.end_frame for s in shots], pa.int64()),
        "start_s": pa.array([s.start_s for s in shots], pa.float64()),
        "end_s": pa.array([s.end_s for s in shots], pa.float64()),
    }
    meta = {}
    for m in modality_meta:
        dim = int(modality_meta[m]["dim"])
        if m in absent:
            cols[m] = pa.nulls(n, vector_type(dim))
            cols[f"{m}_count"] = pa.array(np.zeros(n, np.int32))
            meta[m] = {**modality_meta[m], "absent": absent[m]}
        elif m in pooled:
            means, counts = pooled[m]
            cols[m] = vector_array(means, dim)
            cols[f"{m}_count"] = pa.array(np.asarray(counts, np.int32), pa.int32())
            meta[m] = modality_meta[m]
    table = pa.table(cols).replace_schema_metadata(_metadata("shots", movie_id, meta, cache_key))
    _write(path, table)


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


def write_synopsis(path: Path, movie_id: str, sentences: Sequence[str], vectors: np.ndarray,
                   meta: dict, cache_key: str | None = None) -> None:
    dim = int(meta["dim"])
    table = pa.table({
        "sentence_idx": pa.array(np.arange(len(sentences), dtype=np.int32)),
        "text": pa.array(list(sentences), pa.string()),
        "vector": vector_array(vectors, dim),
    }).replace_schema_metadata(_metadata("synopsis", movie_id, {"synopsis": meta}, cache_key))
    _write(path, table)
