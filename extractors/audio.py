"""``audio``: Audio Spectrogram Transformer embeddings of 10 s windows (mega-spec §1.5, §5 #15).

MEGA's audio input is a 10 s window every second (9 s overlap). The paper model is AST
fine-tuned on AudioSet (``MIT/ast-finetuned-audioset-10-10-0.4593``) through transformers'
``ASTModel``; the feature is its pooled output (the mean of the [CLS] and distillation tokens
after the final layer norm, 768-d). Preprocessing is transformers' ``ASTFeatureExtractor``
(Kaldi log-mel filterbank, 128 bins, 25 ms / 10 ms frames at 16 kHz, padded to 1024 frames,
normalised with AudioSet's mean/std), configured from ``entry.preprocess``.

The architecture comes from ``entry.arch["config"]`` (an ``ASTConfig``), so only
``model.safetensors`` is needed; transformers maps the checkpoint's key names and its
``audio_spectrogram_transformer.`` prefix, and the classifier head is left out. The tiny entry
is an ``ASTModel`` with one 24-wide layer over 32x32 non-overlapping patches (128 tokens).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Extractor, Sampling, WeightsEntry
from .hf import load_pretrained


class AudioExtractor(Extractor):
    """AST pooled embedding of one 10 s, 16 kHz mono window per row."""

    sampling = Sampling.AUDIO
    batch_size = 16

    def __init__(self, entry: WeightsEntry, *args: Any, **kwargs: Any) -> None:
        from transformers import ASTFeatureExtractor

        spec = entry.preprocess
        self.window_samples = int(round(spec["sampling_rate"] * spec["window_s"]))
        self.features = ASTFeatureExtractor(
            sampling_rate=spec["sampling_rate"],
            num_mel_bins=spec["num_mel_bins"],
            max_length=spec["max_length"],
            mean=spec["mean"],
            std=spec["std"],
            do_normalize=spec["do_normalize"],
        )
        super().__init__(entry, *args, **kwargs)

    def _config(self):
        from transformers import ASTConfig

        return ASTConfig(**self.entry.arch["config"])

    def _build_model(self) -> nn.Module:
        from transformers import ASTModel

        return ASTModel(self._config())

    def _load_model(self, path: Path) -> nn.Module:
        from transformers import ASTModel

        return load_pretrained(ASTModel, path, self._config(), self.model_id)

    def _preprocess(self, batch: Any) -> torch.Tensor:
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.shape[1:] != (self.window_samples,):
            raise ValueError(
                f"expected audio as float32 (B, {self.window_samples}), got {getattr(batch, 'dtype', type(batch).__name__)} "
                f"{getattr(batch, 'shape', None)}"
            )
        spec = self.entry.preprocess
        fbank = self.features(list(batch), sampling_rate=spec["sampling_rate"], return_tensors="pt")["input_values"]
        return fbank.to(self.device)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=inputs).pooler_output
