"""mega-pipe extractors: one feature extractor per modality and the weights registry.

See docs/extractors.md. The public API::

    from mega_pipe.extractors import build_extractors, MODALITIES
    extractors = build_extractors("tiny", MODALITIES)
    vectors = extractors["clip"].encode(frames)   # float32 (B, dim)
"""
from .entry import (
    KEYFRAME_MODALITIES,
    MODALITIES,
    MODALITY_SPECS,
    VIDEO_MODALITIES,
    ModalitySpec,
    Sampling,
    WeightsEntry,
)
from .errors import ExtractorError, WeightsIntegrityError, WeightsNotFoundError
from .registry import (
    MODEL_SETS,
    REGISTRY,
    build_extractors,
    entry_for,
    weights_search_paths,
)

__all__ = [
    "KEYFRAME_MODALITIES",
    "MODALITIES",
    "VIDEO_MODALITIES",
    "MODEL_SETS",
    "MODALITY_SPECS",
    "ModalitySpec",
    "REGISTRY",
    "Extractor",
    "ExtractorError",
    "Sampling",
    "WeightsEntry",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "build_extractors",
    "entry_for",
    "weights_search_paths",
]


def __getattr__(name: str):
    """``Extractor`` (the protocol class) is imported on first access: it needs torch, which the
    rest of this package does not (the pipeline plans a run before importing it)."""
    if name == "Extractor":
        from .base import Extractor

        return Extractor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
