"""``place``: scene features from a ResNet-50 trained on Places365 (mega-spec §1.5, §5 #15).

Paper weights: CSAIL's ``resnet50_places365.pth.tar``, a training checkpoint whose
``state_dict`` was saved from ``nn.DataParallel`` (keys prefixed ``module.``) for a 365-class
torchvision ResNet-50. Preprocessing follows CSAIL's demo code: squash to 256x256, centre-crop
224, ImageNet mean/std. The feature is the 2048-d global-pool output, one frame per second.
"""
from __future__ import annotations

from .entry import SAMPLING
from .convnet import PooledCNNExtractor


class PlaceExtractor(PooledCNNExtractor):
    """Places365 ResNet-50 pool features of one frame per second."""

    sampling = SAMPLING["place"]
    batch_size = 32
