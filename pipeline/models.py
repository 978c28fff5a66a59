"""The extractor models of one run (docs/architecture.md, stage "pool"): which modalities, their
registry entries (checked once, by ``extractors.registry.model_entries``), the working frame
size, and the models themselves, built on first need and kept for every movie of the run."""
from __future__ import annotations

from typing import Callable, Sequence

from ..extractors.registry import (
    MODALITIES,
    VIDEO_MODALITIES,
    build_entries,
    locate_weights,
    model_entries,
)
from ..model.device import resolve_device
from .inputs import ExtractConfig


class ExtractorPool:
    """Builds extractors on first need and keeps them for the whole run (several movies).

    Planning a run (entries, samplings, weights lookup) needs no deep-learning library; torch and
    the model libraries are imported only when :meth:`get` builds a model, so decoding can start
    first (docs/decoding.md)."""

    def __init__(self, cfg: ExtractConfig, default_modalities: Sequence[str] = ()):
        self.cfg = cfg
        # An explicit --device cuda is checked now (one clear error before any work); "auto" is
        # resolved when the first model is built.
        self._device = None if cfg.device == "auto" else resolve_device(cfg.device)
        requested = cfg.modalities or default_modalities or VIDEO_MODALITIES
        model_entries(cfg.model_set, requested)        # the selection's one check
        self.entries = model_entries(cfg.model_set, MODALITIES)
        self.modalities = tuple(dict.fromkeys(requested))
        # The working resolution depends on the model set, not on the modality subset, so that
        # adding or dropping a modality never invalidates the cached features of the others.
        self.frame_size = cfg.frame_size or max(
            (e.input_size for e in self.entries.values()), default=224)
        self._built: dict = {}
        # Hears how many frames of the movie being decoded are done, every few seconds of video
        # (decode_pass.REPORT_FRAMES): a catalogue run's progress across workers.
        self.frame_listener: Callable[[int], None] | None = None

    def check(self, modalities: Sequence[str]) -> None:
        """Fail now (WeightsNotFoundError listing every searched path) if weights are missing."""
        locate_weights({m: self.entries[m] for m in modalities if m not in self._built},
                       weights_dirs=self.cfg.weights_dirs, offline=self.cfg.offline,
                       allow_download=self.cfg.allow_download)

    def get(self, modalities: Sequence[str]) -> dict:
        missing = [m for m in modalities if m not in self._built]
        if missing:
            self._device = self._device or resolve_device(self.cfg.device)
            self._built.update(build_entries(
                {m: self.entries[m] for m in missing}, device=self._device,
                weights_dirs=self.cfg.weights_dirs, offline=self.cfg.offline,
                allow_download=self.cfg.allow_download, precision=self.cfg.encoder_precision))
        return {m: self._built[m] for m in modalities}

    def meta(self, m: str, used: bool = True) -> dict:
        """Provenance of modality ``m``: the digest of the weights actually loaded when the
        extractor was built in this run, else the registry's published digest (the cache key
        uses the registry entry, which identifies the weights). ``used=False`` (a modality the
        movie lacks): always the registry's, so that a movie's files never depend on which
        models earlier movies of the same process happened to build."""
        e = self.entries[m]
        built = self._built.get(m) if used else None
        return {"dim": e.dim, "model_id": e.name,
                "weights_sha256": built.weights_sha256 if built else e.sha256,
                "sampling": self.sampling(m)}

    def sampling(self, m: str) -> str:
        """What one sample of modality ``m`` is (the modality table, through its entry)."""
        return self.entries[m].sampling.value
