"""Subtitle cues from sidecar files (SRT, WebVTT, ASS/SSA) and from text streams inside a video.

The ``subtitle`` modality (contract: ``samples/subtitle.parquet``) is one sentence-encoder
feature per **timed subtitle segment** (MEGA supplementary, Sec. 3): each cue becomes one sample
whose interval is the cue's ``[start, end)``. This module only turns files into clean, timed text;
encoding (docs/extractors.md) and pooling (docs/contract.md) happen elsewhere.

Why our own parsers instead of ``pysubs2``: pysubs2 glues WebVTT ``NOTE`` blocks and non-numeric
cue identifiers onto the previous cue's text and rejects a whole ASS file for one bad timestamp.
The three formats are small, so we parse them ourselves and skip (and count) only the broken
cues; one markup cleaner then serves every format, ffmpeg's SRT output included.

Text decoding is done here, not by the parser, because subtitle files come in every encoding
(see :func:`decode_text`); :mod:`mega_pipe.pipeline.synopsis` reuses it for synopses.
"""
from __future__ import annotations

import html
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import charset_normalizer
import imageio_ffmpeg

from ..manifests.errors import InputError

Flavour = Literal["srt", "vtt", "ass"]


@dataclass(frozen=True)
class Cue:
    """One displayed subtitle: ``[start_s, end_s)`` on the subtitle's own clock, and its text."""

    start_s: float
    end_s: float
    text: str


# --------------------------------------------------------------------------------------------
# Decoding

# Longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# Western European Windows text is by far the most common legacy subtitle encoding.
_PREFERRED_LEGACY = "cp1252"
# charset_normalizer cannot tell the single-byte Latin code pages apart on short, mostly-ASCII
# text: their "chaos" and "coherence" scores then differ by less than this.
_SCORE_TIE = 0.01


def decode_text(data: bytes, source: str) -> tuple[str, str | None]:
    """Decode a text file's bytes; return ``(text, guessed_encoding)``.

    A byte-order mark or valid UTF-8 is certain (``guessed_encoding`` is None). Otherwise the
    bytes are legacy 8-bit text and ``charset_normalizer`` guesses the code page; when cp1252
    scores as well as its pick we take cp1252 (see ``_SCORE_TIE``). With no plausible guess at
    all we fall back to cp1252. ``source`` names the file in error messages.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return _checked_text(data.decode(codec), source), None
            except UnicodeDecodeError as exc:
                raise InputError(f"{source}: not valid {codec} text despite its byte-order mark"
                                 f" ({exc.reason})") from exc
    try:
        return _checked_text(data.decode("utf-8"), source), None
    except UnicodeDecodeError:
        pass
    encoding = _guess_legacy_encoding(data)
    return _checked_text(data.decode(encoding, errors="replace"), source), encoding


def _guess_legacy_encoding(data: bytes) -> str:
    """charset_normalizer's best single-byte guess, with cp1252 winning ties."""
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        return _PREFERRED_LEGACY
    if _PREFERRED_LEGACY in best.could_be_from_charset:
        return _PREFERRED_LEGACY
    for match in matches:
        if (match.encoding == _PREFERRED_LEGACY
                and match.chaos <= best.chaos + _SCORE_TIE
                and match.coherence >= best.coherence - _SCORE_TIE):
            return _PREFERRED_LEGACY
    return best.encoding


def _checked_text(text: str, source: str) -> str:
    """Reject binary data (NUL characters never occur in text) and drop a stray leading BOM."""
    if "\x00" in text:
        raise InputError(f"{source}: not a text file (it contains NUL bytes)")
    return text.removeprefix("\ufeff")


def read_text_file(path: str | os.PathLike, what: str) -> tuple[str, str | None]:
    """Read and decode a text file (see :func:`decode_text`); ``what`` names it in errors."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    return decode_text(data, str(path))


# --------------------------------------------------------------------------------------------
# Parsing: every parser yields raw (start, end, text-with-markup) triples and a count of cues
# whose timing could not be read.

_RawCue = tuple[float, float, str]

# [[h:]m]m:ss[.,fff]: SRT uses a comma, WebVTT and ASS a dot; WebVTT may omit the hours, ASS
# writes centiseconds. Up to three fraction digits, so milliseconds are exact.
_TIMESTAMP = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?")
_TIMING_LINE = re.compile(r"^\s*([\d:.,]+)\s*-->\s*([\d:.,]+)(?:\s|$)")
_INDEX_LINE = re.compile(r"^\s*\d+\s*$")


def _parse_timestamp(token: str) -> float | None:
    """Seconds for one timestamp, or None when it is not a valid one."""
    match = _TIMESTAMP.fullmatch(token.strip())
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    if int(minutes) >= 60 or int(seconds) >= 60:
        return None
    millis = int((fraction or "0").ljust(3, "0"))
    total_ms = ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + millis
    return total_ms / 1000


def _parse_timed_lines(text: str, flavour: Literal["srt", "vtt"]) -> tuple[list[_RawCue], int]:
    """SRT and WebVTT: a ``start --> end`` line followed by the cue's text lines.

    WebVTT ends a cue's text at the first blank line (the spec forbids blank lines inside a cue),
    so identifiers, ``NOTE``, ``STYLE`` and ``REGION`` blocks, which always follow a blank line,
    are never taken for text. SRT is parsed leniently, as real files are sloppy: the text runs to
    the next timing line, minus trailing blank lines and the next cue's number, so missing or
    extra blank lines do not lose cues.
    """
    cues: list[tuple[float, float, list[str]]] = []
    malformed = 0
    text_lines: list[str] | None = None  # the lines of the cue being read, None between cues
    for line in text.splitlines():
        if "-->" in line:
            if flavour == "srt" and text_lines:
                _drop_cue_number(text_lines)
            match = _TIMING_LINE.match(line)
            times = [_parse_timestamp(token) for token in match.groups()] if match else [None]
            if None in times:
                malformed += 1
                text_lines = None
            else:
                text_lines = []
                cues.append((times[0], times[1], text_lines))
        elif text_lines is not None:
            if flavour == "vtt" and not line.strip():
                text_lines = None
            else:
                text_lines.append(line)
    return [(start, end, "\n".join(lines)) for start, end, lines in cues], malformed


def _drop_cue_number(lines: list[str]) -> None:
    """Remove the next SRT cue's number (and blank lines) from the end of a cue's text lines."""
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and _INDEX_LINE.match(lines[-1]):
        lines.pop()


# Start and End are fields 2 and 3, Text the last, in both ASS ("Layer, ...") and SSA
# ("Marked, ...") when a file has no Format line of its own.
_DEFAULT_ASS_FORMAT = ["layer", "start", "end", "style", "name", "marginl", "marginr", "marginv",
                       "effect", "text"]
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


def _parse_ass(text: str) -> tuple[list[_RawCue], int]:
    """ASS/SSA: the ``Dialogue:`` lines of the ``[Events]`` section.

    ``Comment:`` (and picture/sound/command) events are never displayed, so they are skipped.
    The text is the last field and may itself contain commas, hence the bounded split.
    """
    cues: list[_RawCue] = []
    malformed = 0
    in_events = False
    fields = _DEFAULT_ASS_FORMAT
    for line in text.splitlines():
        section = _SECTION.match(line)
        if section:
            in_events = section.group(1).strip().lower() == "events"
            continue
        if not in_events or ":" not in line:
            continue
        kind, _, rest = line.partition(":")
        kind = kind.strip().lower()
        if kind == "format":
            fields = [name.strip().lower() for name in rest.split(",")]
        elif kind == "dialogue":
            values = rest.lstrip().split(",", len(fields) - 1)
            record = dict(zip(fields, values)) if len(values) == len(fields) else {}
            start = _parse_timestamp(record.get("start", ""))
            end = _parse_timestamp(record.get("end", ""))
            if start is None or end is None or "text" not in record:
                malformed += 1
            else:
                cues.append((start, end, record["text"]))
    return cues, malformed


def _detect_flavour(text: str) -> Flavour | None:
    """The format from the content (file names are often wrong): WebVTT header, ASS sections,
    else any SRT-style timing line."""
    if text.lstrip().startswith("WEBVTT"):
        return "vtt"
    if re.search(r"^\s*\[(script info|v4\+? styles|events)\]", text, re.IGNORECASE | re.MULTILINE):
        return "ass"
    if any(_TIMING_LINE.match(line) for line in text.splitlines()):
        return "srt"
    return None


# --------------------------------------------------------------------------------------------
# Markup removal

_OVERRIDE_BLOCK = re.compile(r"(\{[^{}]*\})")
_DRAWING_MODE = re.compile(r"\\p(\d+)")
_RUBY_TEXT = re.compile(r"<rt\b[^>]*>.*?</rt\s*>", re.IGNORECASE | re.DOTALL)
# Tags start with a letter (<i>, </font>, <v Bob>, <c.yellow>) or are WebVTT karaoke timestamps
# (<00:01.500>); "I <3 you" and "a < b" are left alone.
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>")
_LINE_BREAK = re.compile(r"\\[Nnh]")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                                    "\u2060\u2066\u2067\u2068\u2069\ufeff"))


def clean_cue_text(raw: str, flavour: Flavour) -> str:
    """The text a viewer reads: markup removed, lines joined by one space.

    Removes ``{...}`` blocks (ASS override tags and comments; they also turn up in SRT files,
    e.g. ``{\\an8}``, and ffmpeg keeps ASS comments when it converts ASS to SRT, while braces
    essentially never hold dialogue), ASS vector drawings (text between ``{\\p1}`` and
    ``{\\p0}``), HTML-like and WebVTT tags (voice spans keep their spoken text, ruby annotations
    are dropped), WebVTT character references (only WebVTT escapes ``&``), ``\\N``/``\\n``/``\\h``
    breaks and invisible direction marks. Music notes and punctuation stay: they are content.
    """
    kept: list[str] = []
    drawing = False
    for piece in _OVERRIDE_BLOCK.split(_RUBY_TEXT.sub("", raw)):
        if piece.startswith("{") and piece.endswith("}"):
            modes = _DRAWING_MODE.findall(piece)
            if modes:
                drawing = int(modes[-1]) > 0
        elif not drawing:
            kept.append(piece)
    text = _TAG.sub("", "".join(kept))
    if flavour == "vtt":
        text = html.unescape(text)
    text = _LINE_BREAK.sub(" ", text).translate(_INVISIBLE)
    return " ".join(text.split())


def _finish(raw: list[_RawCue], malformed: int, flavour: Flavour, source: str,
            warnings: list[str]) -> tuple[list[Cue], list[str]]:
    """Clean, validate and sort cues; raise if none is left."""
    cues: list[Cue] = []
    backwards = empty = 0
    for start, end, text in raw:
        if end <= start:
            backwards += 1
            continue
        clean = clean_cue_text(text, flavour)
        if not clean:
            empty += 1
            continue
        cues.append(Cue(start, end, clean))
    for count, what in ((malformed, "with an unreadable timing line"),
                        (backwards, "whose end is not after their start"),
                        (empty, "with no text after markup removal")):
        if count:
            warnings.append(f"{source}: dropped {count} subtitle cue(s) {what}")
    if not cues:
        raise InputError(f"{source}: no usable subtitle cues")
    cues.sort(key=lambda cue: (cue.start_s, cue.end_s))
    return cues, warnings


def _parse(text: str, flavour: Flavour, source: str, warnings: list[str]) -> tuple[list[Cue], list[str]]:
    raw, malformed = _parse_ass(text) if flavour == "ass" else _parse_timed_lines(text, flavour)
    return _finish(raw, malformed, flavour, source, warnings)


# --------------------------------------------------------------------------------------------
# Public entry points


def read_subtitle_file(path: str | os.PathLike) -> tuple[list[Cue], list[str]]:
    """Cues (sorted by start) and warnings from a sidecar ``.srt``, ``.vtt``, ``.ass`` or ``.ssa``.

    The format is detected from the content. Warnings name a guessed text encoding and count
    dropped cues. Raises :class:`InputError` for unreadable files, other formats and files
    without a single usable cue.
    """
    text, guessed = read_text_file(path, "subtitle file")
    source = str(path)
    warnings = [f"{source}: text encoding guessed as {guessed}"] if guessed else []
    flavour = _detect_flavour(text)
    if flavour is None:
        raise InputError(f"{source}: not a SubRip (.srt), WebVTT (.vtt) or ASS/SSA subtitle file")
    return _parse(text, flavour, source, warnings)


def text_subtitle_streams(video_path: str | os.PathLike) -> list[dict]:
    """Every subtitle stream of a video, in container order.

    Each entry: ``index`` (its position among the subtitle streams, as in ffmpeg's ``0:s:N``),
    ``codec`` (ffmpeg's codec name), ``language`` and ``title`` (container metadata or None) and
    ``is_text`` (the codec carries text, per ffmpeg's codec descriptor, rather than bitmaps
    such as DVD/PGS/DVB subtitles).
    """
    try:
        container = av.open(str(video_path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot open video {video_path}: {exc}") from exc
    with container:
        streams = []
        for position, stream in enumerate(container.streams.subtitles):
            try:
                codec, is_text = stream.codec.canonical_name, bool(stream.codec.text_sub)
            except (av.error.FFmpegError, ValueError):  # a codec this ffmpeg does not know
                codec, is_text = "unknown", False
            streams.append({
                "index": position,
                "codec": codec,
                "language": stream.metadata.get("language"),
                "title": stream.metadata.get("title"),
                "is_text": is_text,
            })
        return streams


_BITMAP_HINT = ", which cannot be read as text; give a sidecar .srt instead"


def read_embedded_subtitles(video_path: str | os.PathLike, stream_index: int | None = None, *,
                            ffmpeg: str | None = None) -> tuple[list[Cue], list[str]]:
    """Cues and warnings from a text subtitle stream inside the video.

    ``stream_index`` counts subtitle streams only (None: the first text stream). ffmpeg converts
    the stream to SRT, so every text codec it decodes (mov_text, subrip, ass, webvtt, ...) goes
    through one parser. Cue times are exactly those of ffmpeg's SRT output, which ffmpeg makes
    relative to the container's start time (the earliest stream start), so a container that
    starts at 10 s still gives a cue shown 0.5 s into the movie as 0.5. Bitmap streams cannot be
    read as text and raise :class:`InputError`.
    """
    name = Path(video_path).name
    streams = text_subtitle_streams(video_path)
    if not streams:
        raise InputError(f"{name}: the video has no subtitle streams")
    if stream_index is None:
        text_streams = [stream for stream in streams if stream["is_text"]]
        if not text_streams:
            codecs = ", ".join(sorted({stream["codec"] for stream in streams}))
            raise InputError(f"{name}: only bitmap subtitle streams ({codecs}){_BITMAP_HINT}")
        stream = text_streams[0]
    elif 0 <= stream_index < len(streams):
        stream = streams[stream_index]
        if not stream["is_text"]:
            raise InputError(f"{name}: subtitle stream {stream_index} is a bitmap stream"
                             f" ({stream['codec']}){_BITMAP_HINT}")
    else:
        raise InputError(f"{name}: no subtitle stream {stream_index} (the video has {len(streams)})")

    source = f"{name} subtitle stream {stream['index']}"
    srt = _ffmpeg_to_srt(Path(video_path), stream["index"], ffmpeg, source)
    text, _ = decode_text(srt, source)  # ffmpeg writes UTF-8: never a guess
    return _parse(text, "srt", source, [])


def _ffmpeg_to_srt(video_path: Path, index: int, ffmpeg: str | None, source: str) -> bytes:
    """The subtitle stream converted to SRT by ffmpeg, as bytes."""
    ffmpeg = ffmpeg or imageio_ffmpeg.get_ffmpeg_exe()
    command = [ffmpeg, "-nostdin", "-v", "error", "-i", str(video_path), "-map", f"0:s:{index}",
               "-f", "srt", "pipe:1"]
    try:
        result = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        raise InputError(f"cannot run ffmpeg ({ffmpeg}): {exc.strerror or exc}") from exc
    if result.returncode != 0:
        errors = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        reason = errors[-1] if errors else f"exit status {result.returncode}"
        raise InputError(f"{source}: ffmpeg could not convert it to SRT: {reason}")
    return result.stdout
