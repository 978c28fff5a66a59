"""``appr``: appearance features from an ImageNet ResNet-50 (mega-spec §1.5, §5 #15).

Paper weights: torchvision's ``ResNet50_Weights.IMAGENET1K_V2`` with its own transforms (resize
the short side to 232, bilinear with antialiasing, centre-crop 224, ImageNet mean/std). The
feature is the 2048-d global-pool output (GraphTP's appearance features are a 2048-d ImageNet
CNN), one frame per second.
"""
from __future__ import annotations

from .entry import SAMPLING
from .convnet import PooledCNNExtractor


class ApprExtractor(PooledCNNExtractor):
    """ImageNet ResNet-50 pool features of one frame per second."""

    sampling = SAMPLING["appr"]
    batch_size = 32
