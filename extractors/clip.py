"""``clip``: CLIP ViT-B/32 image embeddings (MEGA supplementary, Sec. 2-3).

MEGA's CLIP_movie (fine-tuned on IMDB images) is not public; our stand-in is the OpenAI
ViT-B/32 image embedding (512-d), one frame per second (docs/extractors.md). The paper file is
OpenAI's own ``ViT-B-32.pt`` (a TorchScript archive whose URL contains its sha256), loaded into
open_clip's ``CLIP`` class built from ``entry.arch`` (open_clip's ViT-B-32 config with QuickGELU,
as the OpenAI weights need). Preprocessing is open_clip's for these weights: bicubic resize of the
short side to 224, centre crop, OpenAI mean/std. The projected embedding is L2-normalised
(``normalize_output``), as CLIP embeddings are compared by cosine.

The tiny entry is the same open_clip ``CLIP`` class with a 2-layer, 64-wide vision tower.
Only the vision tower is kept after loading.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Extractor, as_uint8_array, read_state_dict
from .preprocess import image_batch

# Entries of OpenAI's TorchScript state dict that are constants, not parameters.
_OPENAI_CONSTANTS = ("input_resolution", "context_length", "vocab_size")


class ClipExtractor(Extractor):
    """open_clip vision tower: one L2-normalised embedding per frame."""


    def _build_model(self) -> nn.Module:
        from open_clip.model import CLIP

        arch = self.entry.arch
        return CLIP(
            embed_dim=arch["embed_dim"],
            vision_cfg=dict(arch["vision_cfg"]),
            text_cfg=dict(arch["text_cfg"]),
            quick_gelu=arch["quick_gelu"],
        )

    def _load_model(self, path: Path) -> nn.Module:
        model = self._build_model()
        state = {k: v for k, v in read_state_dict(path).items() if k not in _OPENAI_CONSTANTS}
        model.load_state_dict(state, strict=True)
        return model

    def _feature_model(self, model: nn.Module) -> nn.Module:
        return model.visual

    def _preprocess(self, batch: Any) -> torch.Tensor:
        frames = as_uint8_array(batch, 4, "RGB frames (B, H, W, 3)")
        return image_batch(frames, self.entry.preprocess, self.device)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)
