"""Probe a movie file: streams, exact frame rate, time base, rotation, display size.

Probing uses PyAV (the FFmpeg libraries in-process) and reads only the container headers plus
the first video frame (its display-matrix rotation is a frame property in PyAV). Nothing here is
approximate: rates and time bases are kept as :class:`fractions.Fraction`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from ..manifests.errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    index: int                  # stream index in the container
    codec: str
    width: int                  # coded size
    height: int
    sample_aspect_ratio: Fraction
    rotation: int               # degrees, as FFmpeg applies it (0, 90, 180, 270)
    display_width: int          # after SAR and rotation
    display_height: int
    frame_rate: Fraction        # average frame rate (exact fraction); VFR files: the mean rate
    time_base: Fraction
    start_time: Fraction | None  # seconds, from the stream header (None when unknown)
    frames: int | None          # frame count from the header (None when unknown)
    duration: Fraction | None = None  # seconds, from the stream header (None when unknown)


@dataclass(frozen=True)
class AudioInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    start_time: Fraction | None
    track: int = 0              # position among the audio streams (what --audio-track counts)
    language: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class ProbeInfo:
    path: str
    container: str
    duration_s: float | None     # container duration (header), None when unknown
    start_time: float            # container start time (s); subtitle cue times are relative to it
    video: VideoInfo
    audio: AudioInfo | None      # the audio track to decode (--audio-track; default the first)
    subtitles: list[dict] = field(default_factory=list)  # every subtitle stream; "index" counts them
    audio_tracks: list[AudioInfo] = field(default_factory=list)  # every audio stream
    subtitle_track: int | None = None  # the chosen subtitle stream (--subtitle-track), else None

    def expected_duration(self) -> float | None:
        """How long the decoded timeline should be according to the headers: the video stream's
        duration, else the container's (which covers every stream) from the first video frame."""
        if self.video.duration:
            return float(self.video.duration)
        if self.duration_s is None:
            return None
        return self.duration_s - max(0.0, float(self.video.start_time or 0) - self.start_time)

    def to_json(self) -> dict:
        def conv(o):
            if isinstance(o, Fraction):
                return f"{o.numerator}/{o.denominator}"
            if isinstance(o, dict):
                return {k: conv(v) for k, v in o.items()}
            if isinstance(o, list):
                return [conv(v) for v in o]
            return o

        return conv(asdict(self))


def _fraction(x) -> Fraction | None:
    if x is None:
        return None
    try:
        f = Fraction(x.numerator, x.denominator) if hasattr(x, "numerator") else Fraction(x)
    except (ZeroDivisionError, TypeError, ValueError):
        return None
    return f if f > 0 else None


def choose_track(kind: str, languages: list[str | None], choice: str | None) -> int | None:
    """The position of the ``kind`` track that ``choice`` names: its number among the movie's
    ``kind`` streams (``"1"``) or its language tag (``"fra"``); None when ``choice`` is None.
    Raise :class:`InputError`, listing the tracks, when there is no such track."""
    if choice is None:
        return None
    if choice.isdigit():
        if int(choice) < len(languages):
            return int(choice)
    else:
        for i, lang in enumerate(languages):
            if lang and lang.lower() == choice.lower():
                return i
    have = ", ".join(f"#{i} ({lang or 'no language tag'})" for i, lang in enumerate(languages))
    raise InputError(f"--{kind}-track {choice}: no such {kind} track "
                     f"(the movie has {have or 'none'})")


def probe(path: str | Path, audio_track: str | None = None,
          subtitle_track: str | None = None) -> ProbeInfo:
    """Probe ``path``; raise :class:`InputError` if it is unreadable or has no video stream.

    ``audio_track`` / ``subtitle_track`` choose the stream to use (see :func:`choose_track`);
    an unknown one raises :class:`InputError`."""
    import av

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable media file ({_reason(e)})") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream (streams: "
                             f"{', '.join(s.type for s in container.streams) or 'none'})")
        video = _video_info(container, path)
        tracks = [_audio_info(a, i) for i, a in enumerate(container.streams.audio)]
        subs = [
            {"index": i, "stream": s.index, "codec": s.codec_context.name,
             "language": s.metadata.get("language"), "title": s.metadata.get("title")}
            for i, s in enumerate(container.streams.subtitles)
        ]
        a_pos = choose_track("audio", [t.language for t in tracks], audio_track)
        s_pos = choose_track("subtitle", [s["language"] for s in subs], subtitle_track)
        duration = container.duration / 1_000_000 if container.duration else None
        start = container.start_time / 1_000_000 if container.start_time else 0.0
        return ProbeInfo(path=str(path), container=container.format.name, duration_s=duration,
                         start_time=start,
                         video=video, audio=tracks[a_pos or 0] if tracks else None,
                         subtitles=subs, audio_tracks=tracks, subtitle_track=s_pos)


def _reason(e: Exception) -> str:
    """FFmpeg's (or the OS's) message, without the errno and the file name that ``str(e)``
    adds (``[Errno 1094995529] Invalid data found when processing input: 'x.mp4'``)."""
    return getattr(e, "strerror", None) or str(e)


def _video_info(container, path: Path) -> VideoInfo:
    """The first video stream: exact rate and time base, rotation (from its first decoded
    frame), frame size and display size."""
    import av

    vs = container.streams.video[0]
    cc = vs.codec_context
    tb = _fraction(vs.time_base) or Fraction(1, 90000)
    rate = _fraction(vs.average_rate) or _fraction(vs.guessed_rate) or _fraction(vs.base_rate)
    if rate is None:
        raise InputError(f"{path}: video stream has no usable frame rate")
    try:
        first = next(container.decode(vs))
        rotation = int(round(getattr(first, "rotation", 0) or 0)) % 360
    except StopIteration:
        raise InputError(f"{path}: video stream contains no decodable frame") from None
    except av.FFmpegError as e:
        raise InputError(f"{path}: cannot decode video ({_reason(e)})") from None
    sar = _fraction(vs.sample_aspect_ratio) or Fraction(1)
    width, height = cc.width or vs.width, cc.height or vs.height
    if not width or not height:
        raise InputError(f"{path}: video stream has no frame size")
    dw, dh = round(width * sar), height
    if rotation in (90, 270):
        dw, dh = dh, dw
    return VideoInfo(
        index=vs.index, codec=cc.name, width=width, height=height,
        sample_aspect_ratio=sar, rotation=rotation, display_width=dw, display_height=dh,
        frame_rate=rate, time_base=tb,
        start_time=None if vs.start_time is None else vs.start_time * tb,
        frames=vs.frames or None,
        duration=vs.duration * tb if vs.duration else None,
    )


def _audio_info(a, track: int) -> AudioInfo:
    atb = _fraction(a.time_base) or Fraction(1, a.codec_context.sample_rate or 1)
    return AudioInfo(
        index=a.index, codec=a.codec_context.name,
        sample_rate=a.codec_context.sample_rate or 0,
        channels=a.codec_context.channels or 0,
        start_time=None if a.start_time is None else a.start_time * atb,
        track=track, language=a.metadata.get("language"), title=a.metadata.get("title"),
    )

