"""Image and video preprocessing, described as data by a weights entry's ``preprocess`` dict.

Keys (torchvision's ``ImageClassification`` / ``VideoClassification`` presets, as data):

- ``input_size``: the short side (px) the decoder must deliver at least;
- ``resize``: an int resizes the short side to it (aspect kept); ``[h, w]`` resizes to exactly
  that size (Places365 and the Kinetics video models squash, as they were trained);
- ``interpolation``: ``"bilinear"`` or ``"bicubic"``; ``antialias``: bool;
- ``crop``: centre-crop size, int or ``[h, w]``;
- ``mean`` / ``std``: per-channel normalisation of values scaled to [0, 1].

Frames arrive as uint8 ``(..., H, W, 3)`` numpy arrays. They are resized as uint8 tensors in
channels-last layout (the permuted view of HWC data), which is torchvision's fast path — about
10x faster on CPU than resizing a contiguous NCHW uint8 tensor — and only the small cropped
result is converted to float.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

_INTERPOLATION = {"bilinear": F.InterpolationMode.BILINEAR, "bicubic": F.InterpolationMode.BICUBIC}


def image_batch(frames: np.ndarray, spec: dict, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` RGB frames -> normalised float ``(B, 3, crop_h, crop_w)``."""
    x = _resize_crop(_to_nchw(frames, spec, device), spec)
    return _normalize(x.to(torch.float32, memory_format=torch.contiguous_format), spec)


def video_batch(clips: np.ndarray, spec: dict, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` RGB clips -> normalised float ``(B, 3, T, crop_h, crop_w)``."""
    b, t, h, w, c = clips.shape
    x = _resize_crop(_to_nchw(clips.reshape(b * t, h, w, c), spec, device), spec)
    x = x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C, T, h, w), as video models take
    # One copy converts the dtype and makes the layout contiguous: per-channel normalisation of
    # channels-first planes is about twice as fast as of interleaved channels.
    return _normalize(x.to(torch.float32, memory_format=torch.contiguous_format), spec)


def _to_nchw(frames: np.ndarray, spec: dict, device: torch.device) -> torch.Tensor:
    if min(frames.shape[1:3]) < spec["input_size"]:
        raise ValueError(f"frames of {frames.shape[2]}x{frames.shape[1]} px: the short side must be >= {spec['input_size']}")
    if not frames.flags.writeable:  # torch cannot wrap read-only memory (e.g. np.frombuffer)
        frames = frames.copy()
    return torch.from_numpy(frames).to(device).permute(0, 3, 1, 2)


def _resize_crop(x: torch.Tensor, spec: dict) -> torch.Tensor:
    size = spec["resize"]
    x = F.resize(
        x,
        [size] if isinstance(size, int) else list(size),
        interpolation=_INTERPOLATION[spec["interpolation"]],
        antialias=spec["antialias"],
    )
    crop = spec["crop"]
    return F.center_crop(x, [crop, crop] if isinstance(crop, int) else list(crop))


def _normalize(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """In place on channels-first ``(N, 3, ...)``: ``(x / 255 - mean) / std``, folded into one
    multiply and one add (constants computed in float64)."""
    shape = [1, 3] + [1] * (x.ndim - 2)
    mean = torch.tensor(spec["mean"], dtype=torch.float64)
    std = torch.tensor(spec["std"], dtype=torch.float64)
    scale = (1.0 / (255.0 * std)).to(torch.float32).view(shape).to(x.device)
    shift = (-mean / std).to(torch.float32).view(shape).to(x.device)
    return x.mul_(scale).add_(shift)
