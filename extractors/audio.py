"""``audio``: Audio Spectrogram Transformer embeddings of 10 s windows.

MEGA's audio input is a 10 s window every second (9 s overlap; MEGA supplementary, Sec. 3); its
model is not public (docs/extractors.md, "Why these models"). The paper model is AST
fine-tuned on AudioSet (``MIT/ast-finetuned-audioset-10-10-0.4593``) through transformers'
``ASTModel``; the feature is its pooled output (the mean of the [CLS] and distillation tokens
after the final layer norm, 768-d). Preprocessing is transformers' ``ASTFeatureExtractor``
(Kaldi log-mel filterbank, 128 bins, 25 ms / 10 ms frames at 16 kHz, padded to 1024 frames,
normalised with AudioSet's mean/std), configured from ``entry.preprocess``.

Consecutive windows overlap by 9 s, and every filterbank frame depends on its own 25 ms of audio
only (Kaldi's DC removal, pre-emphasis and window are per frame). So a batch of consecutive
windows is featurised once over the audio span it covers and each window takes its rows: the
same numbers (tested against the per-window extractor) for a tenth of the work.

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

from .base import Extractor
from .entry import WeightsEntry
from .hf import load_pretrained

_FRAME_S, _SHIFT_S = 0.025, 0.010   # Kaldi fbank frames (ASTFeatureExtractor's defaults)


class AudioExtractor(Extractor):
    """AST pooled embedding of one 10 s, 16 kHz mono window per row."""


    def __init__(self, entry: WeightsEntry, *args: Any, **kwargs: Any) -> None:
        spec = entry.preprocess
        rate = spec["sampling_rate"]
        self.window_samples = int(round(rate * spec["window_s"]))
        self.stride_samples = rate   # one window per second (MEGA supplementary, Sec. 3)
        self.shift = int(round(rate * _SHIFT_S))
        self.features = self._fbank_extractor(spec, spec["max_length"], spec["do_normalize"])
        # The unnormalised filterbank of a whole run of consecutive windows.
        self.window_frames = 1 + (self.window_samples - int(round(rate * _FRAME_S))) // self.shift
        span_frames = self.window_frames + (entry.batch_size - 1) * self.stride_samples // self.shift
        self.span_features = self._fbank_extractor(spec, span_frames, False)
        super().__init__(entry, *args, **kwargs)

    @staticmethod
    def _fbank_extractor(spec: dict, max_length: int, normalize: bool):
        from transformers import ASTFeatureExtractor

        return ASTFeatureExtractor(sampling_rate=spec["sampling_rate"], num_mel_bins=spec["num_mel_bins"],
                                   max_length=max_length, mean=spec["mean"], std=spec["std"],
                                   do_normalize=normalize)

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
        fbank = np.concatenate([self._fbank_run(run) for run in self.consecutive_runs(batch)])
        return torch.from_numpy(fbank).to(self.device)

    def consecutive_runs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Split the batch where a window is not the previous one moved on by one stride."""
        s, starts = self.stride_samples, [0]
        for i in range(1, len(batch)):
            if s % self.shift or not np.array_equal(batch[i - 1, s:], batch[i, :-s]):
                starts.append(i)
        return [batch[a:b] for a, b in zip(starts, starts[1:] + [len(batch)])]

    def _fbank_run(self, run: np.ndarray) -> np.ndarray:
        """Normalised, padded AST input for consecutive windows, ``(len(run), max_length, mels)``."""
        rate = self.entry.preprocess["sampling_rate"]
        if len(run) == 1 or len(run) > self.batch_size:
            return self.features(list(run), sampling_rate=rate, return_tensors="np")["input_values"]
        s = self.stride_samples
        span = np.concatenate([run[0]] + [w[-s:] for w in run[1:]])
        rows = self.span_features(span, sampling_rate=rate, return_tensors="np")["input_values"][0]
        out = np.zeros((len(run), self.features.max_length, rows.shape[1]), np.float32)
        n = min(self.window_frames, self.features.max_length)
        step = s // self.shift
        for i in range(len(run)):
            out[i, :n] = rows[i * step:i * step + n]
        return self.features.normalize(out).astype(np.float32, copy=False)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=inputs).pooler_output
