"""mega-pipe extractors: one feature extractor per modality and the weights registry.

See docs/extractors.md. The public API::

    from mega_pipe.extractors import build_extractors, MODALITIES
    extractors = build_extractors("tiny", MODALITIES)
    vectors = extractors["clip"].encode(frames)   # float32 (B, dim)
"""
from .base import Extractor, Sampling, WeightsEntry
from .registry import (
    MODALITIES,
    MODEL_SETS,
    REGISTRY,
    WeightsIntegrityError,
    WeightsNotFoundError,
    add_weights_cli,
    build_extractors,
    entry_for,
    weights_search_paths,
)

__all__ = [
    "MODALITIES",
    "MODEL_SETS",
    "REGISTRY",
    "Extractor",
    "Sampling",
    "WeightsEntry",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "add_weights_cli",
    "build_extractors",
    "entry_for",
    "weights_search_paths",
]
