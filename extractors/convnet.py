"""Convolutional feature extractors: torchvision classifiers read at their global pool.

``place``, ``appr`` and ``action`` all take a torchvision classification network, load its
checkpoint whole, and drop the final ``fc`` layer, so the feature is the globally pooled
activation before the classifier (2048-d for ResNet-50, 512-d for R(2+1)D-18).

torchvision's ResNet widths are fixed, so the tiny set cannot be a smaller torchvision ResNet;
it uses :class:`TinyConvNet` instead, a three-layer conv/ReLU stack ending in the same kind of
global average pool, run through the same preprocessing and ``encode`` path.

``entry.arch`` is ``{"builder": "torchvision", "model": <torchvision model name>,
"num_classes": N}`` or ``{"builder": "tiny", "conv": 2 | 3, "widths": [w1, w2], "seed": s}``
(the last layer's width is the entry's ``dim``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Extractor, as_uint8_array, read_state_dict
from .entry import Sampling
from .preprocess import image_batch, video_batch


class TinyConvNet(nn.Sequential):
    """A cheap stand-in for a CNN backbone: a patchifying conv, two strided convs, a global pool.

    ``conv=2`` works on images ``(B, 3, H, W)``; ``conv=3`` on clips ``(B, 3, T, H, W)``, where
    the second layer is a temporal convolution (stride 2 in time), a (2+1)D factorisation like
    R(2+1)D's. With the registry's widths: about 10 M multiply-adds per 224 px image and 11 M
    per 16x112x112 clip (the patchifying first layer costs input pixels x 3 x ``widths[0]``).
    """

    def __init__(self, conv: int, widths: list[int], out_dim: int) -> None:
        w1, w2 = widths
        if conv == 2:
            layers: list[nn.Module] = [
                nn.Conv2d(3, w1, kernel_size=4, stride=4),
                nn.ReLU(),
                nn.Conv2d(w1, w2, kernel_size=3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(w2, out_dim, kernel_size=3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
            ]
        elif conv == 3:
            layers = [
                nn.Conv3d(3, w1, kernel_size=(1, 4, 4), stride=(1, 4, 4)),
                nn.ReLU(),
                nn.Conv3d(w1, w2, kernel_size=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)),
                nn.ReLU(),
                nn.Conv3d(w2, out_dim, kernel_size=(1, 2, 2), stride=(1, 2, 2)),
                nn.ReLU(),
                nn.AdaptiveAvgPool3d(1),
            ]
        else:
            raise ValueError(f"TinyConvNet: conv must be 2 or 3, got {conv}")
        super().__init__(*layers, nn.Flatten(1))
        # He initialisation keeps activations at a useful scale through the ReLUs; PyTorch's
        # default conv init shrinks them, leaving near-constant random features.
        for layer in self.modules():
            if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)


class PooledCNNExtractor(Extractor):
    """A CNN whose pooled pre-classifier activation is the feature (FRAME or CLIP sampling).

    It serves three modalities (sampling: MEGA supplementary, Sec. 3; models: docs/extractors.md),
    which differ only in their entries:

    - ``place``: ResNet-50 trained on Places365. CSAIL's ``resnet50_places365.pth.tar`` is a
      training checkpoint whose ``state_dict`` was saved from ``nn.DataParallel`` (keys prefixed
      ``module.``); preprocessing as CSAIL's demo code: squash to 256x256, centre-crop 224,
      ImageNet mean/std. 2048-d, one frame per second.
    - ``appr``: torchvision's ``ResNet50_Weights.IMAGENET1K_V2`` with its own transforms (short
      side to 232, bilinear with antialiasing, centre-crop 224, ImageNet mean/std). 2048-d (as
      GraphTP's appearance features), one frame per second.
    - ``action``: R(2+1)D-18, ``R2Plus1D_18_Weights.KINETICS400_V1``: every frame resized to
      exactly 128x171 (bilinear, *without* antialiasing, as torchvision hard-codes for these
      weights), centre-cropped to 112x112, Kinetics mean/std. 512-d, one 16-frame clip per second.
    """

    def _build_model(self) -> nn.Module:
        arch = self.entry.arch
        if arch["builder"] == "tiny":
            return TinyConvNet(arch["conv"], arch["widths"], self.dim)
        if arch["builder"] == "torchvision":
            import torchvision

            return torchvision.models.get_model(arch["model"], weights=None, num_classes=arch["num_classes"])
        raise ValueError(f"{self.model_id}: unknown builder {arch['builder']!r}")

    def _load_model(self, path: Path) -> nn.Module:
        model = self._build_model()
        model.load_state_dict(read_state_dict(path), strict=True)
        return model

    def _feature_model(self, model: nn.Module) -> nn.Module:
        if self.entry.arch["builder"] == "torchvision":
            model.fc = nn.Identity()
        return model

    def _preprocess(self, batch: Any) -> torch.Tensor:
        spec = self.entry.preprocess
        if self.sampling is Sampling.CLIP:
            clips = as_uint8_array(batch, 5, "RGB clips (B, T, H, W, 3)")
            if clips.shape[1] != self.clip_len:
                raise ValueError(f"{self.model_id} takes clips of {self.clip_len} frames, got {clips.shape[1]}")
            return video_batch(clips, spec, self.device)
        return image_batch(as_uint8_array(batch, 4, "RGB frames (B, H, W, 3)"), spec, self.device)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)
