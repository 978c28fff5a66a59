"""The one decode pass: a single FFmpeg process gives every video frame and the audio.

Why one FFmpeg process with a pipe (measurement in docs/decoding.md): on a 2-minute 1080p H.264
movie on 2 cores, ``ffmpeg -f null`` decoding took 10.9 s; this reader (decode + scale to
398x224 RGB + PTS) 12.2 s; PyAV decode + reformat 13.5 s; decord at the same size 13.9 s.

The filter graph scales every frame once, in FFmpeg's C code, to the *working resolution* (the
largest short side any selected extractor needs, 256 px for the default models): that single
stream of frames feeds shot detection (every frame), the per-second image samples and the
16-frame action clips (the last two from :func:`downscale` copies where they need fewer pixels).
Scaling stays in YUV 4:2:0 and a second, unscaled conversion makes RGB: swscale's SIMD path for
that is about 1.3 CPU-s per 2 min of 1080p cheaper than scaling straight to RGB, for chroma at
half the working resolution (mean difference 0.5/255).
FFmpeg applies the display-matrix rotation itself and we scale to square pixels (SAR honoured).

Presentation timestamps come from FFmpeg's ``showinfo`` filter (integer PTS in the stream time
base, exact), with ``-copyts`` so that they are the container's own timestamps and
``-fps_mode passthrough`` so that no frame is duplicated or dropped (VFR-safe). Audio is decoded
in the same process to 16 kHz mono float32 on a second pipe, aligned so that sample 0 is at the
first video frame (gaps filled with silence by ``aresample``; the first audio PTS comes from
``ashowinfo`` on the same clock).
"""
from __future__ import annotations

import io
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import numpy as np

from ..manifests.errors import InputError
from .probe import ProbeInfo

AUDIO_RATE = 16_000

_SHOWINFO_FRAME = re.compile(rb"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\S+\s+duration:\s*(-?\d+)")
_SHOWINFO_TB = re.compile(rb"config in time_base:\s*(\d+)/(\d+)")
_ASHOWINFO_FIRST = re.compile(rb"Parsed_ashowinfo.*\bn:\s*0\s+pts:\s*-?\d+\s+pts_time:\s*(-?[\d.]+)")
# With ``-loglevel level+info`` FFmpeg tags each line with its level after the context prefixes:
# "[h264 @ 0x55d0] [error] Invalid NAL unit size (1531 > 552)."
_LOG_LINE = re.compile(r"^(?:\[[^\]]*\] )*\[(\w+)\] ?(.*)")
_ERROR_LEVELS = ("error", "fatal", "panic")


def ffmpeg_exe() -> str:
    """The FFmpeg binary: ``$MEGA_PIPE_FFMPEG``, else the imageio-ffmpeg wheel's, else PATH."""
    exe = os.environ.get("MEGA_PIPE_FFMPEG")
    if exe:
        return exe
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        found = shutil.which("ffmpeg")
        if not found:
            raise InputError("no ffmpeg binary found (install imageio-ffmpeg or ffmpeg)") from None
        return found


def working_size(info: ProbeInfo, short_side: int) -> tuple[int, int]:
    """(width, height) of the decoded frames: the display aspect ratio, short side =
    ``short_side``, even dimensions. Sources smaller than that are upscaled: the extractors'
    preprocessing needs at least this size."""
    dw, dh = info.video.display_width, info.video.display_height
    if dw >= dh:
        h = short_side
        w = max(2, int(round(short_side * dw / dh / 2)) * 2)
    else:
        w = short_side
        h = max(2, int(round(short_side * dh / dw / 2)) * 2)
    return w, h


@dataclass
class Frame:
    index: int          # 0-based decoded frame number (presentation order)
    t: float            # presentation time (s) on the movie timeline (first frame = 0)
    image: np.ndarray   # (H, W, 3) uint8 RGB at the working resolution (shared: do not modify)


def _pipe(size: int = 1 << 20) -> tuple[int, int]:
    """An OS pipe enlarged to ``size`` bytes where Linux allows it (default 64 KiB): FFmpeg then
    writes a whole frame without waiting for the reader, instead of in 64 KiB steps."""
    r, w = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError):
        pass
    return r, w


def _children_cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process's finished children (FFmpeg, once waited)."""
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime, ru.ru_stime
    except (ImportError, OSError):
        return 0.0, 0.0


def _children_maxrss() -> float:
    """The peak resident memory (MB) of the largest finished child (Linux reports KiB)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    except (ImportError, OSError):
        return 0.0


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` shrunk by an integer ``factor`` (area average); ``image`` itself for 1."""
    if factor <= 1:
        return image
    import cv2

    h, w = image.shape[:2]
    return cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


class MovieDecoder:
    """Iterate over every frame of a movie once, while its audio is collected alongside.

    Use as a context manager; ``frames()`` yields :class:`Frame`; after it is exhausted,
    ``end_time`` is the end of the last frame. ``take_audio()`` hands over the 16 kHz mono audio
    decoded so far (stream it; ``audio_offset()`` aligns it to the movie timeline).
    """

    def __init__(self, info: ProbeInfo, short_side: int, *, audio: bool = True,
                 queue_frames: int = 48):
        self.info = info
        self.width, self.height = working_size(info, short_side)
        self.want_audio = audio and info.audio is not None
        self._frames: queue.Queue = queue.Queue(maxsize=queue_frames)
        self._pts: queue.Queue = queue.Queue()
        self._audio_chunks: list[bytes] = []
        self._audio_lock = threading.Lock()
        self._audio_start: Fraction | None = None     # first audio PTS (s), from ashowinfo
        self._audio_known = threading.Event()
        self._last_error: str | None = None
        self._time_base: Fraction | None = None
        self._proc: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self.first_pts: int | None = None
        self.end_time: float | None = None
        self.n_frames = 0
        self.pts_warnings: list[str] = []
        self.decode_errors = 0                # FFmpeg's error-level messages (damaged data)...
        self.first_error: str | None = None   # ... and the first one
        # The account of the pass (docs/decoding.md, "Where the time goes"): CPU seconds of
        # FFmpeg and of each reader thread, and how long the video reader waited on a full
        # queue (FFmpeg then waits too: the consumer is the bottleneck).
        self.account: dict[str, float] = {}
        self._t_start = 0.0
        self._children0: tuple[float, float] = (0.0, 0.0)

    # -- process management -------------------------------------------------------------------
    def _command(self, audio_fd: int | None) -> list[str]:
        v = self.info.video
        graph = (f"[0:{v.index}]scale={self.width}:{self.height}:flags=area,setsar=1,"
                 f"format=yuv420p,scale,format=rgb24,showinfo=checksum=0[v]")
        if audio_fd is not None:
            # ashowinfo reports the first audio PTS in the same (copyts) clock as showinfo;
            # aresample's async mode fills timestamp gaps with silence.
            graph += (f";[0:{self.info.audio.index}]ashowinfo,aresample={AUDIO_RATE}:async=1,"
                      f"aformat=sample_fmts=flt:channel_layouts=mono[a]")
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info",
               "-copyts", "-i", self.info.path, "-filter_complex", graph,
               "-map", "[v]", "-fps_mode", "passthrough", "-f", "rawvideo", "pipe:1"]
        if audio_fd is not None:
            cmd += ["-map", "[a]", "-f", "f32le", f"pipe:{audio_fd}"]
        return cmd

    def __enter__(self) -> "MovieDecoder":
        audio_r = audio_w = None
        if self.want_audio:
            audio_r, audio_w = _pipe()
        video_r, video_w = _pipe()
        cmd = self._command(audio_w)
        self._children0 = _children_cpu()
        self._t_start = time.perf_counter()
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=video_w, stderr=subprocess.PIPE,
                pass_fds=(audio_w,) if audio_w is not None else ())
        finally:
            for fd in (video_w, audio_w):
                if fd is not None:
                    os.close(fd)
        if audio_w is not None:
            self._start(self._read_audio, os.fdopen(audio_r, "rb", buffering=1 << 20), name="audio")
        self._start(self._read_video, io.FileIO(video_r, "rb"))
        self._start(self._read_log)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
        # Unblock the video reader if the consumer stopped early.
        while True:
            try:
                self._frames.get_nowait()
            except queue.Empty:
                break
        for t in self._threads:
            t.join(timeout=5)
        if self._proc:
            self._proc.wait()
            for f in (self._proc.stdout, self._proc.stderr):
                if f:
                    f.close()

    def _start(self, target, *args, name: str | None = None) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name=name)
        t.start()
        self._threads.append(t)

    # -- reader threads (each drains one pipe so FFmpeg never blocks on another) ----------------
    def _read_video(self, f: io.FileIO) -> None:
        """Read each frame straight into its own array (one copy, out of the kernel's pipe)."""
        shape = (self.height, self.width, 3)
        blocked = 0.0
        with f:
            while True:
                frame = np.empty(shape, np.uint8)
                view, got = memoryview(frame).cast("B"), 0
                while got < view.nbytes and (n := f.readinto(view[got:])):
                    got += n
                if got < view.nbytes:
                    break
                try:
                    self._frames.put_nowait(frame)
                except queue.Full:
                    t0 = time.perf_counter()
                    self._frames.put(frame)
                    blocked += time.perf_counter() - t0
        self.account["video_reader_cpu"] = time.thread_time()
        self.account["video_reader_blocked_s"] = blocked
        self._frames.put(None)

    def _read_audio(self, f) -> None:
        with f:
            while chunk := f.read(1 << 16):
                with self._audio_lock:
                    self._audio_chunks.append(chunk)
        self.account["audio_reader_cpu"] = time.thread_time()

    def _showinfo(self, line: bytes) -> bool:
        """Take a frame's PTS or the stream's time base from a showinfo line; whether it held one."""
        m = _SHOWINFO_FRAME.search(line)
        if m:
            self._pts.put((int(m.group(2)), int(m.group(3))))
            return True
        m = _SHOWINFO_TB.search(line)
        if m:
            self._time_base = Fraction(int(m.group(1)), int(m.group(2)))
            return True
        return False

    def _read_log(self) -> None:
        for line in self._proc.stderr:
            if line.startswith(b"[Parsed_showinfo"):   # two lines a frame: the PTS, the colours
                self._showinfo(line)
                continue
            if b"Parsed_ashowinfo" in line:
                m = _ASHOWINFO_FIRST.search(line)
                if m:
                    self._audio_start = Fraction(m.group(1).decode())
                    self._audio_known.set()
                continue
            if self._showinfo(line) or b"Parsed_showinfo" in line:
                continue
            m = _LOG_LINE.match(line.decode("utf-8", "replace").rstrip())
            if m and m.group(1) in _ERROR_LEVELS:
                self.decode_errors += 1
                self.first_error = self.first_error or m.group(2)
                self._last_error = m.group(2)
        self.account["log_reader_cpu"] = time.thread_time()
        self._audio_known.set()
        self._pts.put(None)

    def _error(self) -> InputError:
        msg = self._last_error or f"ffmpeg exited with code {self._proc.returncode}"
        return InputError(f"{self.info.path}: decoding failed: {msg}")

    # -- the frame stream ---------------------------------------------------------------------
    def frames(self) -> Iterator[Frame]:
        tb = None
        last_pts = None
        last_dur = 0
        while True:
            image = self._frames.get()
            if image is None:
                break
            item = self._pts.get()
            if item is None:   # FFmpeg's log ended before its frames did: should not happen
                raise self._error()
            pts, dur = item
            if tb is None:
                tb = self._time_base or self.info.video.time_base
                self.first_pts = pts
            if last_pts is not None and pts <= last_pts:
                self.pts_warnings.append(f"non-increasing PTS at frame {self.n_frames}")
            last_pts, last_dur = pts, dur
            yield Frame(self.n_frames, float((pts - self.first_pts) * tb), image)
            self.n_frames += 1
        self._proc.wait()
        self.account["ffmpeg_wall_s"] = time.perf_counter() - self._t_start
        cpu, rss = _children_cpu(), _children_maxrss()
        self.account["ffmpeg_cpu"] = (cpu[0] - self._children0[0]) + (cpu[1] - self._children0[1])
        self.account["ffmpeg_user_cpu"] = cpu[0] - self._children0[0]
        self.account["ffmpeg_max_rss_mb"] = rss
        for t in self._threads:
            t.join()
        if self._proc.returncode != 0:
            raise self._error()
        if self.n_frames == 0:
            raise InputError(f"{self.info.path}: no video frame could be decoded")
        if last_dur <= 0:   # unknown duration of the last frame: use the mean frame interval
            last_dur = 1 / (self.info.video.frame_rate * tb)
        self.end_time = float((last_pts + last_dur - self.first_pts) * tb)

    def warnings(self) -> list[str]:
        """What went wrong without stopping the decoding (call after ``frames()``)."""
        out = self.pts_warnings[:5]
        if self.decode_errors:
            n = self.decode_errors
            out.append(f"ffmpeg reported {n} decoding error{'s' * (n > 1)} (damaged file?), "
                       f"first: {self.first_error.rstrip('.')}")
        return out

    def audio_offset(self) -> int:
        """Audio samples that precede t = 0 (negative: that much silence comes first).

        Call after the first frame: t = 0 is the first frame's PTS; the audio starts at its own
        first PTS, read from the same FFmpeg clock."""
        self._audio_known.wait()
        if self._audio_start is None or self.first_pts is None:
            return 0
        first_video = self.first_pts * (self._time_base or self.info.video.time_base)
        return round((first_video - self._audio_start) * AUDIO_RATE)

    def take_audio(self) -> np.ndarray:
        """The audio (float32, 16 kHz mono) decoded since the previous call; streams."""
        with self._audio_lock:
            chunks, self._audio_chunks = self._audio_chunks, []
            data = b"".join(chunks)
            cut = len(data) - len(data) % 4   # keep a partial float for the next call
            self._audio_chunks = [data[cut:]] if cut < len(data) else []
        return np.frombuffer(data[:cut], np.float32)

