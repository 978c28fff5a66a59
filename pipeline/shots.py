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


def _make_detector(cfg: DetectorConfig, min_len_frames: int):
    from scenedetect.detectors import (
        AdaptiveDetector,
        ContentDetector,
        ThresholdDetector,
    )

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
    """Feed frames in order with :meth:`push`; :meth:`finish` returns the shots."""

    def __init__(self, cfg: DetectorConfig, frame_rate: Fraction):
        from scenedetect import FrameTimecode

        self._timecode = FrameTimecode
        self.rate = frame_rate
        self.cfg = cfg
        self.min_len = max(1, round(cfg.min_shot_len_s * float(frame_rate)))
        self.detector = _make_detector(cfg, self.min_len)
        self.cuts: set[int] = set()
        self.times: list[float] = []

    def push(self, index: int, t: float, rgb: np.ndarray) -> None:
        self.times.append(t)
        small = downscale(rgb, self.factor(rgb.shape[1]))
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)   # PySceneDetect expects OpenCV's BGR
        for tc in self.detector.process_frame(self._timecode(index, self.rate), bgr):
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
