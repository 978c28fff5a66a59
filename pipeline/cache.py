"""Cache keys: a stage's output is reused when its inputs, config and weights are unchanged.

A key is a digest of everything a stage's output depends on (:func:`stage_key`); each output
file carries the key it was computed with (``FeatureFolder.cached_key`` reads it back), so reuse
is decided by the file itself: a file whose key matches the key the current run would compute is
kept; anything else is recomputed.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

_BLOCK = 1 << 20


def file_fingerprint(path: str | Path) -> str:
    """sha256 of the file's size and sampled content: the first and last MiB and 8 MiB-blocks
    spread evenly in between. Fast on multi-GB movies, and any re-encode, trim or remux changes it.
    (Modification times are deliberately not used: copying a movie keeps its features.)"""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= 10 * _BLOCK:
            h.update(f.read())
        else:
            for i in range(10):
                f.seek(min(size - _BLOCK, i * (size - _BLOCK) // 9))
                h.update(f.read(_BLOCK))
    return h.hexdigest()


def bytes_fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stage_key(**parts) -> str:
    """A short stable digest of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
