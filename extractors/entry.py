"""What an extractor is, as data: its sampling and its weights entry (no torch needed).

The pipeline plans a run (cache keys, which decode outputs are needed) from these alone, so it can
start decoding before the deep-learning libraries are imported (docs/decoding.md); the extractor
classes (``base.py`` and the modality modules) are imported only to build models.
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from pathlib import Path


class Sampling(str, enum.Enum):
    """What one input of ``encode`` is, i.e. what one output row describes (mega-spec §1.5)."""

    FRAME = "frame"  # one RGB frame per second
    CLIP = "clip"  # one 16-frame RGB clip per second
    AUDIO = "audio"  # one 10 s mono 16 kHz window per second
    TEXT = "text"  # one subtitle cue or synopsis sentence


@dataclass(frozen=True)
class WeightsEntry:
    """One row of the weights registry: a model, its weights file and its preprocessing.

    ``sha256`` is the full hex digest of the file, or only a prefix where the publisher gives only
    a prefix (torchvision embeds 8 hex digits in its file names), or ``None`` where no digest is
    published at all. ``filename`` is looked up (as a relative path) in every weights directory;
    its last component is also the name used in the libraries' caches. It is empty for entries
    that need no file (the tiny set).

    ``arch`` describes the architecture to build (JSON-able, read by the modality's extractor
    class); for tiny entries it also holds the ``seed`` of the random initialisation.
    """

    name: str
    modality: str
    model_set: str
    source: str
    filename: str
    sha256: str | None
    licence: str
    dim: int
    preprocess: dict
    fetch_hint: str
    arch: dict = field(default_factory=dict)

    @property
    def needs_file(self) -> bool:
        """True when the weights come from a file (paper models); False for seeded random init."""
        return bool(self.filename)


# What one sample of each modality is (mega-spec §1.5); each extractor class's `sampling` reads it.
SAMPLING = {
    "clip": Sampling.FRAME,
    "place": Sampling.FRAME,
    "appr": Sampling.FRAME,
    "action": Sampling.CLIP,
    "audio": Sampling.AUDIO,
    "subtitle": Sampling.TEXT,
}


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The sha256 hex digest of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
