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
    """What one input of ``encode`` is: what one output row describes (MEGA supplementary,
    Sec. 3)."""

    FRAME = "frame"  # one RGB frame per second
    CLIP = "clip"  # one 16-frame RGB clip per second
    AUDIO = "audio"  # one 10 s mono 16 kHz window per second
    TEXT = "text"  # one subtitle cue or synopsis sentence


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: what one sample is (MEGA supplementary, Sec. 3), how many samples one
    forward pass encodes, and the extractor class (``module.Class`` in this package) that runs
    it."""

    name: str
    sampling: Sampling
    batch_size: int
    extractor: str


# The modality table, in default order; every other place reads modality facts from here.
MODALITY_SPECS: dict[str, ModalitySpec] = {s.name: s for s in (
    ModalitySpec("clip", Sampling.FRAME, 64, "clip.ClipExtractor"),
    ModalitySpec("place", Sampling.FRAME, 32, "convnet.PooledCNNExtractor"),
    ModalitySpec("appr", Sampling.FRAME, 32, "convnet.PooledCNNExtractor"),
    ModalitySpec("action", Sampling.CLIP, 8, "convnet.PooledCNNExtractor"),
    ModalitySpec("audio", Sampling.AUDIO, 16, "audio.AudioExtractor"),
    ModalitySpec("subtitle", Sampling.TEXT, 64, "subtitle.SubtitleExtractor"),
    ModalitySpec("bassl", Sampling.FRAME, 32, "bassl.BasslExtractor"),
)}
MODALITIES = tuple(MODALITY_SPECS)
# What `extract` computes when no --modalities is given: for a movie file, the six per-second
# modalities; for MovieNet key frames (3 per shot, no audio, no subtitles), MEGA's scene set-up
# (MEGA supplementary, Tab. 2d: bassl, place, clip). `bassl` is BaSSL's shot encoder, trained on
# MovieNet key frames: it is meaningful on key frames, so it is computed for videos only when
# asked for.
VIDEO_MODALITIES = ("clip", "place", "appr", "action", "audio", "subtitle")
KEYFRAME_MODALITIES = ("bassl", "place", "clip")
# The encoders' forward pass: "fp32" (exact, the default) or "bf16" autocast (GPU throughput;
# every feature changes by bf16 rounding, so the cache keys say which; docs/extractors.md).
ENCODER_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True, kw_only=True)
class WeightsEntry:
    """One row of the weights registry: a model, its weights file and its preprocessing.

    ``sha256`` is the full hex digest of the file, or only a prefix where the publisher gives only
    a prefix (torchvision embeds 8 hex digits in its file names), or ``None`` where no digest is
    published at all. ``filename`` is looked up (as a relative path) in every weights directory;
    its last component is also the name used in the libraries' caches. It is empty for entries
    that need no file (the tiny set).

    ``arch`` describes the architecture to build (JSON-able, read by the modality's extractor
    class); for tiny entries it also holds the ``seed`` of the random initialisation. The
    modality's facts (sampling, batch size) and the decoder sizes the preprocessing needs
    (``input_size``, ``clip_len``) are read through the entry.
    """

    name: str
    modality: str
    model_set: str
    source: str
    filename: str = ""
    sha256: str | None = None
    licence: str
    dim: int
    preprocess: dict
    fetch_hint: str
    arch: dict = field(default_factory=dict)

    @property
    def needs_file(self) -> bool:
        """True when the weights come from a file (paper models); False for seeded random init."""
        return bool(self.filename)

    @property
    def spec(self) -> ModalitySpec:
        return MODALITY_SPECS[self.modality]

    @property
    def sampling(self) -> Sampling:
        return self.spec.sampling

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size

    @property
    def input_size(self) -> int:
        """Short side (px) the decoder must deliver at least; 0 for audio and text."""
        return int(self.preprocess.get("input_size", 0))

    @property
    def clip_len(self) -> int:
        """Frames per clip (clip sampling), else 0."""
        return int(self.preprocess.get("clip_len", 0))


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The sha256 hex digest of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
