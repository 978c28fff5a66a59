"""Per-second sampling from the frame stream, and 10 s audio windows from the audio stream.

Both work incrementally on the single decode pass (MEGA supplementary, Sec. 3; docs/contract.md):

* second ``k`` is represented by the frame on screen at ``k + 0.5`` s — the last frame whose
  presentation time is ≤ ``k + 0.5`` (for a partial last second, its midpoint) — and records the
  interval ``[k, k + 1)`` clipped to the movie's end, so the intervals tile the timeline;
* its action clip is the 16 consecutive decoded frames centred on that frame (8 before it, the
  frame itself and 7 after; indices clamped at the movie edges), taken from the smaller copies of
  the frames pushed alongside them when the clip model needs fewer pixels;
* audio window ``k`` is the 10 s of audio centred on ``k + 0.5`` (zero outside the movie).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .decode import AUDIO_RATE, Frame


@dataclass
class SecondSample:
    k: int
    t_start: float
    t_end: float
    frame_index: int
    image: np.ndarray                       # (H, W, 3) uint8
    clip: list[np.ndarray] | None = None    # clip_len (h, w, 3) uint8 frames when clips are wanted


class SecondSampler:
    """Feed every frame with :meth:`push`; collect finished samples; call :meth:`finish` once."""

    def __init__(self, clip_len: int = 0, fps: float = 30.0):
        self.clip_len = clip_len
        self.before = clip_len // 2             # frames before the centre frame
        self.after = clip_len - self.before - 1  # frames after it
        # Enough frames to cover one second plus a clip on each side at the nominal rate.
        self._buf: deque[Frame] = deque(maxlen=max(4, int(math.ceil(fps)) + 2 * clip_len + 4))
        self._clip_images: deque[np.ndarray] = deque(maxlen=self._buf.maxlen)
        self._next_k = 0
        self._pending: list[tuple[int, int]] = []   # (k, centre frame index)

    def push(self, frame: Frame, clip_image: np.ndarray | None = None) -> list[SecondSample]:
        """Add the next frame (and, optionally, the copy of it that clips are made of)."""
        if self._buf and frame.t > self._next_k + 0.5:
            prev = self._buf[-1]
            while frame.t > self._next_k + 0.5:   # a held frame can cover several seconds
                self._pending.append((self._next_k, prev.index))
                self._next_k += 1
        self._buf.append(frame)
        self._clip_images.append(frame.image if clip_image is None else clip_image)
        return self._ready(frame.index, end_time=None)

    def finish(self, end_time: float) -> list[SecondSample]:
        while self._next_k < end_time:
            k = self._next_k
            target = (k + min(k + 1.0, end_time)) / 2
            on_screen = [f for f in self._buf if f.t <= target]
            centre = on_screen[-1] if on_screen else self._buf[0]
            self._pending.append((k, centre.index))
            self._next_k += 1
        return self._ready(self._buf[-1].index, end_time=end_time)

    def _ready(self, last_index: int, end_time: float | None) -> list[SecondSample]:
        out = []
        while self._pending:
            k, c = self._pending[0]
            if end_time is None and last_index < c + self.after:
                break
            self._pending.pop(0)
            lo, hi = self._buf[0].index, self._buf[-1].index
            clip = None
            if self.clip_len:   # buffer positions of the clip's frames, clamped at the edges
                clip = [self._clip_images[min(max(i, lo), hi) - lo]
                        for i in range(c - self.before, c + self.after + 1)]
            t_end = k + 1.0 if end_time is None else min(k + 1.0, end_time)
            out.append(SecondSample(k, float(k), t_end, c, self._buf[c - lo].image, clip))
        return out


@dataclass
class AudioWindow:
    k: int
    t_start: float
    t_end: float
    samples: np.ndarray   # (window * AUDIO_RATE,) float32


class AudioWindower:
    """Cut the streamed 16 kHz audio into 10 s windows centred on ``k + 0.5``, every 1 s."""

    def __init__(self, offset: int = 0, window_s: float = 10.0, rate: int = AUDIO_RATE):
        self.rate = rate
        self.window = int(round(window_s * rate))
        self.half_s = window_s / 2
        self._skip = max(offset, 0)          # samples before t = 0 to drop
        self._buf = np.zeros(max(-offset, 0), np.float32)   # silence before the audio starts
        self._buf_start = 0                   # sample index (movie timeline) of _buf[0]
        self._next_k = 0

    def feed(self, samples: np.ndarray) -> None:
        if self._skip:
            drop = min(self._skip, len(samples))
            samples, self._skip = samples[drop:], self._skip - drop
        if len(samples):
            self._buf = np.concatenate([self._buf, samples])

    def _start_of(self, k: int) -> int:
        return int(round((k + 0.5 - self.half_s) * self.rate))

    def _cut(self, k: int, end_time: float | None) -> AudioWindow:
        s = self._start_of(k)
        out = np.zeros(self.window, np.float32)
        lo, hi = max(s, self._buf_start), min(s + self.window, self._buf_start + len(self._buf))
        if end_time is not None:
            hi = min(hi, int(round(end_time * self.rate)))
        if hi > lo:
            out[lo - s:hi - s] = self._buf[lo - self._buf_start:hi - self._buf_start]
        t0 = max(0.0, k + 0.5 - self.half_s)
        t1 = k + 0.5 + self.half_s if end_time is None else min(end_time, k + 0.5 + self.half_s)
        return AudioWindow(k, t0, t1, out)

    def windows(self, end_time: float | None = None) -> Iterator[AudioWindow]:
        """Windows whose audio has fully arrived; with ``end_time`` (stream finished) all the
        remaining windows up to the movie's end, zero-padded."""
        while True:
            k = self._next_k
            if end_time is not None:
                if k >= end_time:
                    break
            elif self._start_of(k) + self.window > self._buf_start + len(self._buf):
                break
            yield self._cut(k, end_time)
            self._next_k += 1
            keep_from = self._start_of(self._next_k)   # drop audio no later window needs
            if keep_from > self._buf_start:
                cut = min(keep_from - self._buf_start, len(self._buf))
                self._buf = self._buf[cut:]
                self._buf_start += cut
