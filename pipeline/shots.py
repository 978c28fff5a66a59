"""Shot detection: PySceneDetect's detectors driven from our own decoded frames.

PySceneDetect normally decodes the video itself; here its detectors are fed the working-
resolution frames of the single decode pass (mega-pipe decodes once). Detection works in frame
numbers; shot times come from the frames' presentation times, so they are exact for VFR files.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from ..manifests.errors import MegaPipeError
from .decode import downscale

DETECTORS = ("adaptive", "content", "fade")
DETECT_WIDTH = 256


@dataclass(frozen=True)
class DetectorConfig:
    detector: str = "adaptive"
    threshold: float | None = None      # detector's own default when None
    min_shot_len_s: float = 0.5         # PySceneDetect's default is 15 frames (0.5 s at 30 fps)

    def to_json(self) -> dict:
        return {"detector": self.detector, "threshold": self.threshold,
                "min_shot_len_s": self.min_shot_len_s}


@dataclass(frozen=True)
class Shot:
    index: int
    start_frame: int
    end_frame: int     # exclusive
    start_s: float
    end_s: float


class _HsvScore:
    """ContentDetector's frame score computed from an HSV frame, for its default weights (hue,
    saturation and value, no edges) and no stats file: the three mean absolute differences
    come from one ``cv2.absdiff`` and ``cv2.sumElems`` over the interleaved frame instead of a
    ``cv2.split`` and three int32 numpy copies per frame (~0.17 -> ~0.1 ms a frame at 228x128).

    The value is bit-identical to PySceneDetect's: each channel's sum of absolute differences
    is an exact integer (OpenCV accumulates uint8 differences in integers; the sums stay far
    below 2**53), divided by the same float pixel count, combined in the same order
    (tests/test_shots_pooling.py compares the scores of every frame of the real test videos).
    Frames are pushed as HSV (``cv2.COLOR_RGB2HSV``: the same conversion as PySceneDetect's
    ``COLOR_BGR2HSV`` of the channel-swapped frame, without the swap)."""

    def _calculate_frame_score(self, timecode, frame_img: np.ndarray) -> float:
        last = getattr(self, "_last_hsv", None)
        self._last_hsv = frame_img
        if last is None:
            return 0.0
        n = float(frame_img.shape[0] * frame_img.shape[1])
        sums = cv2.sumElems(cv2.absdiff(frame_img, last))
        components = self.Components(delta_hue=sums[0] / n, delta_sat=sums[1] / n,
                                     delta_lum=sums[2] / n, delta_edges=0.0)
        return sum(c * w for c, w in zip(components, self._weights, strict=True)) / sum(
            abs(w) for w in self._weights)


def _hsv_detector_classes():
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    class HsvAdaptiveDetector(_HsvScore, AdaptiveDetector):
        pass

    class HsvContentDetector(_HsvScore, ContentDetector):
        pass

    return HsvAdaptiveDetector, HsvContentDetector


def _make_detector(cfg: DetectorConfig, min_len_frames: int, *, hsv: bool = True):
    """The configured PySceneDetect detector; with ``hsv`` the adaptive and content detectors
    take HSV frames and score them with :class:`_HsvScore` (identical scores, cheaper)."""
    from scenedetect.detectors import (
        AdaptiveDetector,
        ContentDetector,
        ThresholdDetector,
    )

    if hsv:
        AdaptiveDetector, ContentDetector = _hsv_detector_classes()   # noqa: N806
    kw = {"min_scene_len": min_len_frames}
    if cfg.detector == "adaptive":
        if cfg.threshold is not None:
            kw["adaptive_threshold"] = cfg.threshold
        return AdaptiveDetector(**kw)
    if cfg.detector == "content":
        if cfg.threshold is not None:
            kw["threshold"] = cfg.threshold
        return ContentDetector(**kw)
    if cfg.detector == "fade":
        if cfg.threshold is not None:
            kw["threshold"] = cfg.threshold
        return ThresholdDetector(**kw)
    raise MegaPipeError(f"unknown shot detector {cfg.detector!r} (choose from {', '.join(DETECTORS)})")


class ShotDetector:
    """Feed frames in order with :meth:`push`; :meth:`finish` returns the shots.

    ``fast=False`` runs PySceneDetect's stock detectors on BGR frames (the reference the tests
    compare the default, HSV-fed path against)."""

    def __init__(self, cfg: DetectorConfig, frame_rate: Fraction, *, fast: bool = True):
        from scenedetect import FrameTimecode

        self._timecode = FrameTimecode
        self.rate = frame_rate
        self.cfg = cfg
        self.min_len = max(1, round(cfg.min_shot_len_s * float(frame_rate)))
        self.hsv = fast and cfg.detector in ("adaptive", "content")
        self.detector = _make_detector(cfg, self.min_len, hsv=self.hsv)
        self._code = cv2.COLOR_RGB2HSV if self.hsv else cv2.COLOR_RGB2BGR
        self.cuts: set[int] = set()
        self.times: list[float] = []

    def push(self, index: int, t: float, rgb: np.ndarray) -> None:
        self.times.append(t)
        small = downscale(rgb, self.factor(rgb.shape[1]))
        # HSV for the (HSV-scoring) content detectors, else PySceneDetect's BGR
        frame = cv2.cvtColor(small, self._code)
        for tc in self.detector.process_frame(self._timecode(index, self.rate), frame):
            self.cuts.add(tc.frame_num)

    @staticmethod
    def factor(width: int) -> int:
        """PySceneDetect detects on frames downscaled to ~256 px wide (its default, and what its
        thresholds are tuned for); the same integer factor keeps detection cheap at any size."""
        return max(1, round(width / DETECT_WIDTH))

    def finish(self, end_time: float) -> list[Shot]:
        n = len(self.times)
        if n and hasattr(self.detector, "post_process"):
            for tc in self.detector.post_process(self._timecode(n - 1, self.rate)) or []:
                self.cuts.add(tc.frame_num)
        bounds = [0] + sorted(c for c in self.cuts if 0 < c < n) + [n]
        return [
            Shot(i, a, b, self.times[a], self.times[b] if b < n else end_time)
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
        ]
