"""Subtitle reading: real sidecar files in many encodings and formats, and real embedded streams
muxed by ffmpeg."""
from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import pytest
from conftest import SINTEL_SRT
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.pipeline.subtitles import (
    Cue,
    clean_cue_text,
    decode_text,
    read_embedded_subtitles,
    read_subtitle_file,
    text_subtitle_streams,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def sintel_text() -> str:
    """The Sintel subtitles as text (UTF-8 with BOM on disk, 26 cues)."""
    if not SINTEL_SRT.exists():
        pytest.skip(f"{SINTEL_SRT} is not available")
    return SINTEL_SRT.read_bytes().decode("utf-8-sig")


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------------------------
# Sidecar SRT and text encodings


def test_sintel_srt(sintel_text: str) -> None:
    cues, warnings = read_subtitle_file(SINTEL_SRT)
    assert warnings == []
    assert len(cues) == 26
    assert cues[0] == Cue(107.25, 110.5, "This blade has a dark past.")
    # Multi-line cues are joined with one space.
    assert cues[2] == Cue(118.0, 121.45, "You're a fool for traveling alone, so completely unprepared.")
    assert cues[8].text == "Someone very dear? A kindred spirit?"
    assert cues[-1] == Cue(626.2, 629.8, "Scales...")
    assert all(cue.end_s > cue.start_s for cue in cues)
    assert [cue.start_s for cue in cues] == sorted(cue.start_s for cue in cues)


@pytest.mark.parametrize("bom, codec", [
    (b"", "utf-8"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
])
def test_unicode_encodings_are_certain(tmp_path: Path, sintel_text: str, bom: bytes, codec: str) -> None:
    path = tmp_path / "sintel.srt"
    path.write_bytes(bom + sintel_text.encode(codec))
    cues, warnings = read_subtitle_file(path)
    assert warnings == []
    assert cues == read_subtitle_file(SINTEL_SRT)[0]


@pytest.mark.parametrize("encoding, line", [
    ("cp1252", "Café déjà vu, señor — “naïve” façade."),
    ("latin-1", "Schöne Grüße aus München, Señor."),
])
def test_western_legacy_encodings_are_guessed(tmp_path: Path, sintel_text: str, encoding: str,
                                              line: str) -> None:
    """An English file with one accented cue: little evidence, so the Latin code pages tie."""
    extra = f"\n27\n00:11:00,000 --> 00:11:02,500\n{line}\n"
    path = _write(tmp_path / f"{encoding}.srt", sintel_text + extra, encoding)
    cues, warnings = read_subtitle_file(path)
    assert len(cues) == 27
    assert cues[-1] == Cue(660.0, 662.5, line)
    assert warnings == [f"{path}: text encoding guessed as cp1252"]


RUSSIAN = ["Привет, как дела?", "Я давно тебя не видел.", "Всё хорошо, спасибо.",
           "Куда ты идёшь так поздно ночью?", "Мне нужно найти дракона."]


def test_cyrillic_legacy_encoding_is_guessed(tmp_path: Path) -> None:
    text = "".join(f"{i + 1}\n00:00:{2 * i:02d},000 --> 00:00:{2 * i + 1:02d},500\n{line}\n\n"
                   for i, line in enumerate(RUSSIAN))
    path = _write(tmp_path / "ru.srt", text, "cp1251")
    cues, warnings = read_subtitle_file(path)
    assert [cue.text for cue in cues] == RUSSIAN
    assert cues[-1] == Cue(8.0, 9.5, RUSSIAN[-1])
    assert warnings == [f"{path}: text encoding guessed as cp1251"]


def test_short_legacy_file_is_decoded(tmp_path: Path) -> None:
    """Short, mostly-ASCII cp1252 text is where encoding detectors confuse the Latin code pages."""
    path = _write(tmp_path / "short.srt", "1\n00:00:01,000 --> 00:00:02,000\nCafé déjà vu\n", "cp1252")
    cues, warnings = read_subtitle_file(path)
    assert cues == [Cue(1.0, 2.0, "Café déjà vu")]
    assert warnings == [f"{path}: text encoding guessed as cp1252"]


def test_sloppy_srt(tmp_path: Path) -> None:
    """CRLF, a missing blank line, blank lines inside a cue, out-of-order, backwards, broken and
    markup-only cues: the good cues survive, the others are counted."""
    text = (
        "3\r\n00:00:09,000 --> 00:00:10,000\r\nLast <i>one</i>.\r\n\r\n"
        "1\r\n00:00:01,000 --> 00:00:02,500\r\n<font color=\"#ffff00\">{\\an8}Yellow</font> <b>bold</b>\r\n"
        "2\r\n00:00:03,000 --> 00:00:04,000\r\n♪ Fly   me to\r\n\r\nthe moon ♪\r\n\r\n"
        "4\r\n00:00:05,000 --> 00:00:04,000\r\nBackwards\r\n\r\n"
        "5\r\n00:00:06,000 --> soon\r\nBroken timing\r\n\r\n"
        "6\r\n00:00:07,000 --> 00:00:08,000\r\n<i></i>{\\an8}\r\n\r\n"
        "7\r\n00:00:11.5 --> 00:00:12,25 X1:10 X2:20\r\nI <3 you & {laughs}\r\n"
    )
    path = _write(tmp_path / "sloppy.srt", text)
    cues, warnings = read_subtitle_file(path)
    assert cues == [
        Cue(1.0, 2.5, "Yellow bold"),
        Cue(3.0, 4.0, "♪ Fly me to the moon ♪"),
        Cue(9.0, 10.0, "Last one."),
        Cue(11.5, 12.25, "I <3 you &"),
    ]
    assert warnings == [
        f"{path}: dropped 1 subtitle cue(s) with an unreadable timing line",
        f"{path}: dropped 1 subtitle cue(s) whose end is not after their start",
        f"{path}: dropped 1 subtitle cue(s) with no text after markup removal",
    ]


# --------------------------------------------------------------------------------------------
# WebVTT and ASS/SSA

WEBVTT = """WEBVTT - a test file
Kind: captions

STYLE
::cue { color: yellow }

NOTE This is a comment,
not a cue.

intro
00:01.000 --> 00:04.500 align:start position:10%
<v Roger Bingham>We are in New York City</v>

2
00:00:05.000 --> 00:00:07.000
<v.loud Esme>Hello <c.yellow>there</c></v> &amp; <00:00:06.000>welcome &lt;3
<ruby>漢<rt>kan</rt></ruby>字

NOTE after the cues

00:08.250 --> 00:09.000
&nbsp;Last&nbsp;line&lrm;
"""


def test_webvtt(tmp_path: Path) -> None:
    cues, warnings = read_subtitle_file(_write(tmp_path / "captions.vtt", WEBVTT))
    assert warnings == []
    assert cues == [
        Cue(1.0, 4.5, "We are in New York City"),
        Cue(5.0, 7.0, "Hello there & welcome <3 漢字"),
        Cue(8.25, 9.0, "Last line"),
    ]


ASS = r"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:04.00,0:00:05.50,Default,,0,0,0,,{\an8}{\i1}Top{\i0} line,\Nwith, commas
Dialogue: 0,0:00:01.20,0:00:02.00,Default,Bob,0,0,0,,{\pos(10,20)\c&H00FF00&}Soft\nbreak\hand {a note}♪
Comment: 0,0:00:02.00,0:00:03.00,Default,,0,0,0,,Never shown
Dialogue: 1,0:00:02.00,0:00:03.00,Default,,0,0,0,,{\p1}m 0 0 l 100 0 100 100 0 100{\p0}
Dialogue: 0,0:00:03.00,0:00:03.50,Default,,0,0,0,,{\p1}m 0 0 l 1 1{\p0}Sign text
Dialogue: 0,0:00:0x.00,0:00:09.00,Default,,0,0,0,,Bad time
"""

SSA = r"""[Script Info]
ScriptType: v4.00

[V4 Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, TertiaryColour, BackColour, Bold, Italic, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, AlphaLevel, Encoding
Style: Default,Arial,20,16777215,65535,65535,-2147483640,0,0,1,2,2,2,10,10,10,0,1

[Events]
Format: Marked, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: Marked=0,0:00:01.00,0:00:02.50,Default,,0000,0000,0000,,Hello, {\i1}world{\i0}
"""


def test_ass(tmp_path: Path) -> None:
    path = _write(tmp_path / "styled.ass", ASS)
    cues, warnings = read_subtitle_file(path)
    assert cues == [
        Cue(1.2, 2.0, "Soft break and ♪"),
        Cue(3.0, 3.5, "Sign text"),
        Cue(4.0, 5.5, "Top line, with, commas"),
    ]
    assert warnings == [
        f"{path}: dropped 1 subtitle cue(s) with an unreadable timing line",
        f"{path}: dropped 1 subtitle cue(s) with no text after markup removal",
    ]


def test_ssa(tmp_path: Path) -> None:
    cues, warnings = read_subtitle_file(_write(tmp_path / "old.ssa", SSA))
    assert (cues, warnings) == ([Cue(1.0, 2.5, "Hello, world")], [])


def test_format_comes_from_content(tmp_path: Path) -> None:
    cues, _ = read_subtitle_file(_write(tmp_path / "misnamed.srt", WEBVTT))
    assert cues[0] == Cue(1.0, 4.5, "We are in New York City")


def test_only_webvtt_unescapes_entities() -> None:
    assert clean_cue_text("{a note}Tom &amp; Jerry", "srt") == "Tom &amp; Jerry"
    assert clean_cue_text("{a note}Tom &amp; Jerry", "ass") == "Tom &amp; Jerry"
    assert clean_cue_text("{a note}Tom &amp; Jerry", "vtt") == "Tom & Jerry"


@pytest.mark.parametrize("name, content", [
    ("image.srt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))),
    ("notes.srt", "Just some notes,\nno timing at all.\n".encode()),
    ("empty.srt", b""),
    ("blank.srt", "1\n00:00:01,000 --> 00:00:02,000\n<i> </i>\n".encode()),
    ("backwards.srt", "1\n00:00:03,000 --> 00:00:02,000\nNo\n".encode()),
    ("no_events.ass", b"[Script Info]\nTitle: x\n\n[V4+ Styles]\n"),
    ("bad_bom.srt", b"\xff\xfe" + "1\n00:00:01,000 --> 00:00:02,000\nHi".encode("utf-16-le") + b"\x00"),
])
def test_unusable_files_raise(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MegaPipeError, match=name):
        read_subtitle_file(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(MegaPipeError, match="missing.srt"):
        read_subtitle_file(tmp_path / "missing.srt")


def test_decode_text_reports_only_guesses() -> None:
    assert decode_text("Zoë".encode("utf-8"), "x") == ("Zoë", None)
    assert decode_text(b"\xff\xfe" + "Zoë".encode("utf-16-le"), "x") == ("Zoë", None)
    sentence = "Zoë and Chloé meet at the café."
    assert decode_text(sentence.encode("cp1252"), "x") == (sentence, "cp1252")


# --------------------------------------------------------------------------------------------
# Embedded streams (real files muxed by ffmpeg)

SRT_FOR_MUX = ("1\n00:00:00,500 --> 00:00:01,250\n<i>Hello</i> there,\nfriend.\n\n"
               "2\n00:00:01,500 --> 00:00:02,750\n{\\an8}♪ Music ♪\n")
ASS_FOR_MUX = ASS.split("Dialogue: 1,")[0]  # the first two Dialogue lines and the Comment


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                    "-i", "color=c=black:s=32x32:d=3:r=10", *map(str, args)], check=True)


def _pgs_file(path: Path) -> Path:
    """A minimal Blu-ray PGS (.sup) stream: 'PG', PTS, DTS, segment type, size; two END segments.
    Enough for ffmpeg to mux a real bitmap subtitle stream."""
    path.write_bytes(b"".join(b"PG" + struct.pack(">IIBH", pts, 0, 0x80, 0) for pts in (90000, 180000)))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    srt = _write(folder / "in.srt", SRT_FOR_MUX)
    ass = _write(folder / "in.ass", ASS_FOR_MUX)
    sup = _pgs_file(folder / "in.sup")
    names = ("mov_text.mp4", "two.mkv", "mixed.mkv", "bitmap.mkv", "none.mp4", "offset.mkv")
    out = {name: folder / name for name in names}
    _ffmpeg("-i", srt, "-map", "0:v", "-map", "1:s", "-c:v", "mpeg4", "-c:s", "mov_text", out["mov_text.mp4"])
    _ffmpeg("-i", srt, "-i", ass, "-map", "0:v", "-map", "1:s", "-map", "2:s", "-c:v", "mpeg4",
            "-c:s:0", "srt", "-c:s:1", "ass", "-metadata:s:s:0", "language=eng",
            "-metadata:s:s:1", "language=fre", "-metadata:s:s:1", "title=Signs", out["two.mkv"])
    _ffmpeg("-i", sup, "-i", srt, "-map", "0:v", "-map", "1:s", "-map", "2:s", "-c:v", "mpeg4",
            "-c:s:0", "copy", "-c:s:1", "srt", out["mixed.mkv"])
    _ffmpeg("-i", sup, "-map", "0:v", "-map", "1:s", "-c:v", "mpeg4", "-c:s", "copy", out["bitmap.mkv"])
    _ffmpeg("-c:v", "mpeg4", out["none.mp4"])
    _ffmpeg("-i", srt, "-map", "0:v", "-map", "1:s", "-c:v", "mpeg4", "-c:s", "srt",
            "-output_ts_offset", "10", out["offset.mkv"])
    return out


MUXED_SRT_CUES = [Cue(0.5, 1.25, "Hello there, friend."), Cue(1.5, 2.75, "♪ Music ♪")]


def test_stream_listing(videos: dict[str, Path]) -> None:
    assert text_subtitle_streams(videos["two.mkv"]) == [
        {"index": 0, "codec": "subrip", "language": "eng", "title": None, "is_text": True},
        {"index": 1, "codec": "ass", "language": "fre", "title": "Signs", "is_text": True},
    ]
    assert [(s["codec"], s["is_text"]) for s in text_subtitle_streams(videos["mixed.mkv"])] == [
        ("hdmv_pgs_subtitle", False), ("subrip", True)]
    assert text_subtitle_streams(videos["none.mp4"]) == []


def test_mov_text(videos: dict[str, Path]) -> None:
    assert read_embedded_subtitles(videos["mov_text.mp4"]) == (MUXED_SRT_CUES, [])


def test_choose_stream(videos: dict[str, Path]) -> None:
    assert read_embedded_subtitles(videos["two.mkv"])[0] == MUXED_SRT_CUES
    cues, warnings = read_embedded_subtitles(videos["two.mkv"], 1, ffmpeg=FFMPEG)
    # ffmpeg's SRT output wraps ASS styling in <font>/<i> tags and keeps {\an8}: all removed.
    assert cues == [Cue(1.2, 2.0, "Soft break and ♪"), Cue(4.0, 5.5, "Top line, with, commas")]
    assert warnings == []


def test_times_are_relative_to_the_container_start(videos: dict[str, Path]) -> None:
    """Every stream of offset.mkv starts at 10 s; ffmpeg's SRT output counts from there."""
    with av.open(str(videos["offset.mkv"])) as container:
        assert container.start_time == 10 * av.time_base
    assert read_embedded_subtitles(videos["offset.mkv"])[0] == MUXED_SRT_CUES


def test_first_text_stream_skips_bitmaps(videos: dict[str, Path]) -> None:
    assert read_embedded_subtitles(videos["mixed.mkv"])[0] == MUXED_SRT_CUES


@pytest.mark.parametrize("video, index, message", [
    ("mixed.mkv", 0, "bitmap stream \\(hdmv_pgs_subtitle\\)"),
    ("bitmap.mkv", None, "only bitmap subtitle streams"),
    ("two.mkv", 2, "no subtitle stream 2"),
    ("none.mp4", None, "no subtitle streams"),
])
def test_embedded_errors(videos: dict[str, Path], video: str, index: int | None, message: str) -> None:
    with pytest.raises(MegaPipeError, match=message):
        read_embedded_subtitles(videos[video], index)


def test_not_a_video(tmp_path: Path) -> None:
    path = _write(tmp_path / "fake.mp4", "not a video")
    with pytest.raises(MegaPipeError, match="fake.mp4"):
        text_subtitle_streams(path)
