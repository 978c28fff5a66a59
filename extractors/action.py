"""``action``: motion features from R(2+1)D-18 trained on Kinetics-400 (mega-spec §1.5, §5 #15).

MEGA takes a 16-frame clip every second. Paper weights: torchvision's
``R2Plus1D_18_Weights.KINETICS400_V1`` with its video transforms: every frame resized to exactly
128x171 (bilinear, *without* antialiasing, as torchvision hard-codes for these weights),
centre-cropped to 112x112, Kinetics mean/std. The feature is the 512-d global-pool output.
"""
from __future__ import annotations

from .entry import SAMPLING
from .convnet import PooledCNNExtractor


class ActionExtractor(PooledCNNExtractor):
    """R(2+1)D-18 pool features of one 16-frame clip per second."""

    sampling = SAMPLING["action"]
    batch_size = 8
