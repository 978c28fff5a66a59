"""``mega-pipe export``: boundaries (or a feature folder's shots) -> editing and chapter formats.

Pure functions: :func:`load_source` reads a ``boundaries.json`` (docs/boundaries.md) or a feature
folder ``OUT/<movie_id>/`` (docs/contract.md: then only the shots level exists) into a
:class:`Source`; :func:`segments` lists one level's :class:`Segment`\\ s; one writer per format
turns them into text; :func:`write_export` writes the file atomically. :func:`apply_chapters`
copies a movie with chapters embedded (streams copied, not re-encoded).

Two time rules (docs/export.md):

- **frame-based formats** (EDL, OTIO, FCPXML, the CSV's frames and timecodes) count decoded
  frames at the movie's frame rate (the *average* rate for variable-frame-rate files); timecodes
  come from OpenTimelineIO's own functions, drop-frame (``;``) at 30000/1001 and 60000/1001.
- **chapter formats** (WebVTT, ffmetadata, Matroska XML) use the presentation time of the
  segment's first frame: exact for constant rates (frame / rate as a fraction), the decoded PTS
  for variable rates; rounded half-up to whole milliseconds (WebVTT, ffmetadata) or nanoseconds
  (Matroska).
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree as ET

from ..manifests.atomic import atomic_path, check_output_file, warn_replacing
from ..manifests.boundaries import (
    build_boundaries,
    frame_rate,
    read_boundaries,
    validate,
)
from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder
from .decode import ffmpeg_exe

log = logging.getLogger(__name__)

LEVELS = ("shots", "scenes", "acts")
FORMATS = ("edl", "otio", "fcpxml", "webvtt", "ffmetadata", "matroska-xml", "csv")
EXTENSIONS = {".edl": "edl", ".otio": "otio", ".fcpxml": "fcpxml", ".vtt": "webvtt",
              ".webvtt": "webvtt", ".ffmetadata": "ffmetadata", ".ffmeta": "ffmetadata",
              ".xml": "matroska-xml", ".csv": "csv"}
CHAPTER_MUXERS = {".mkv": "matroska", ".mka": "matroska", ".mp4": "mp4", ".m4v": "mp4",
                  ".mov": "mov"}
DROP_FRAME_RATES = (Fraction(30000, 1001), Fraction(60000, 1001))
ON_GRID_S = 1e-6       # a presentation time this close to frame / rate is that exact fraction


@dataclass(frozen=True)
class Segment:
    level: str          # shots | scenes | acts
    index: int          # the index in the source (0-based shots and scenes, acts 1..6)
    name: str           # "Shot 1", "Scene 3", "Act 2: New Situation"
    first_shot: int
    last_shot: int
    start_frame: int
    end_frame: int      # exclusive
    start_s: float      # presentation times (docs/contract.md); end exclusive
    end_s: float
    start_time: Fraction   # exact start / end in seconds used by the chapter formats
    end_time: Fraction
    confidence: float | None = None

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass
class Source:
    """A boundaries document (or the shots of a feature folder), validated."""
    movie_id: str
    movie_path: str | None
    frame_rate: Fraction
    frames: int
    duration_s: float
    doc: dict
    origin: str                       # the file or folder it was read from, for messages
    vfr: bool = False                 # some presentation time is off the frame_rate grid
    missing: list[str] = field(default_factory=list)

    def has(self, level: str) -> bool:
        return self.doc.get(level) is not None

    def default_level(self, chapters: bool = False) -> str:
        """scenes when present, else shots (``chapters``: else acts, then shots)."""
        if self.has("scenes"):
            return "scenes"
        if chapters and self.has("acts"):
            return "acts"
        return "shots"


# ---------------------------------------------------------------- reading

def load_source(path: str | os.PathLike) -> Source:
    """Read a ``boundaries.json`` or a feature folder ``OUT/<movie_id>/``."""
    path = Path(path)
    if path.is_dir():
        return _load_feature_folder(path)
    return source_of(read_boundaries(path), str(path))


def _load_feature_folder(path: Path) -> Source:
    folder = FeatureFolder(path)
    problem = folder.problem()
    if problem:
        raise MegaPipeError(f"{path} is not a feature folder ({problem}): give OUT/<movie_id>/ "
                            "of a completed `mega-pipe extract`")
    try:
        shots = {k: v.tolist() for k, v in folder.read_shot_times().items()}
        doc = build_boundaries(folder.read_manifest(), path, shots, None, None,
                               ["scenes, turning points and acts: read from a feature folder"],
                               0.5)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MegaPipeError(f"{path}: not a readable feature folder ({type(e).__name__}: {e})") \
            from None
    return source_of(validate(doc, str(path)), str(path))


def source_of(doc: dict, origin: str) -> Source:
    """The :class:`Source` of a validated boundaries document (manifests/boundaries.py), named
    ``origin`` in messages (what :func:`load_source` reads; report.py passes the document it
    has already read)."""
    movie, shots = doc["movie"], doc["shots"]
    rate = frame_rate(doc, origin)
    src = Source(movie_id=str(movie.get("id") or Path(origin).stem), movie_path=movie.get("path"),
                 frame_rate=rate, frames=int(movie.get("frames") or shots[-1]["end_frame"]),
                 duration_s=float(movie.get("duration_s") or shots[-1]["end_s"]), doc=doc,
                 origin=origin, missing=list(doc.get("missing") or []))
    src.vfr = any(abs(float(Fraction(int(s["start_frame"])) / rate) - float(s["start_s"])) > ON_GRID_S
                  for s in shots)
    return src


def _exact_time(frame: int, seconds: float, rate: Fraction) -> Fraction:
    """The exact presentation time: frame / rate when the stored time lies on that grid (every
    constant-rate movie), else the stored (decoded PTS) time as a short fraction."""
    grid = Fraction(frame) / rate
    if abs(float(grid) - seconds) <= ON_GRID_S:
        return grid
    f = Fraction(seconds).limit_denominator(1_000_000)
    return f if abs(float(f) - seconds) <= 1e-12 * max(1.0, abs(seconds)) else Fraction(seconds)


def segments(src: Source, level: str, keep_empty: bool = False) -> list[Segment]:
    """The segments of ``level`` in time order. Empty segments (an act between two turning
    points on the same shot) are left out unless ``keep_empty``."""
    if level not in LEVELS:
        raise MegaPipeError(f"unknown level {level!r} (choose from {', '.join(LEVELS)})")
    doc, rate = src.doc, src.frame_rate
    if doc.get(level) is None:
        why = [m for m in src.missing if level[:-1] in m or (level == "acts" and "act" in m)]
        raise MegaPipeError(f"{src.origin} has no {level} ({level}: null"
                            + (f"; {why[0]}" if why else "") + f"); choose another --level "
                            f"({', '.join(lv for lv in LEVELS if src.has(lv))})")
    shots = doc["shots"]
    out = []
    if level == "shots":
        rows = [(s["index"] if "index" in s else i, f"Shot {i + 1}", i, i, None, None, None)
                for i, s in enumerate(shots)]
    else:
        rows = []
        for k, seg in enumerate(doc[level]):
            idx = seg.get("index", k)
            name = (f"Scene {idx + 1}" if level == "scenes"
                    else f"Act {idx}" + (f": {seg['name']}" if seg.get("name") else ""))
            rows.append((idx, name, int(seg["first_shot"]), int(seg["last_shot"]),
                         seg.get("start_s"), seg.get("end_s"), seg.get("confidence")))
    for idx, name, a, b, start_s, end_s, conf in rows:
        sa, sb = shots[a], shots[b]
        start_frame, end_frame = int(sa["start_frame"]), int(sb["end_frame"])
        t0, t1 = float(sa["start_s"]), float(sb["end_s"])
        if start_s is not None and end_s is not None and end_s <= start_s:   # an empty act
            end_frame, t1 = start_frame, t0
        seg = Segment(level, int(idx), name, a, b, start_frame, end_frame, t0, t1,
                      _exact_time(start_frame, t0, rate), _exact_time(end_frame, t1, rate),
                      None if conf is None else float(conf))
        if seg.frames > 0 or keep_empty:
            out.append(seg)
    return out


# ---------------------------------------------------------------- timecodes

def timecode_rate(rate: Fraction) -> tuple[float, bool]:
    """(rate for timecodes, whether it is the movie's own). Timecodes exist at the SMPTE rates
    (23.976, 24, 25, 29.97, 30, 48, 50, 59.94, 60, …); any other rate — e.g. a VFR movie's
    average — counts its frames at the nearest such rate."""
    from opentimelineio import opentime

    r = float(rate)
    if opentime.RationalTime.is_valid_timecode_rate(r):
        return r, True
    nearest = opentime.RationalTime.nearest_valid_timecode_rate(r)
    if nearest <= 0:                   # OTIO answers 0 (and calls it valid) below ~12 fps
        nearest = min((24000 / 1001, 24.0), key=lambda v: abs(v - r))
    return nearest, False


def is_drop_frame(rate: float) -> bool:
    return any(abs(rate - float(d)) < 1e-9 for d in DROP_FRAME_RATES)


def timecode(frame: int, rate: float) -> str:
    """SMPTE timecode of a frame index (OpenTimelineIO; drop-frame ``;`` at 29.97 and 59.94)."""
    from opentimelineio import opentime

    return opentime.to_timecode(opentime.RationalTime(frame, rate), rate)


def _round_units(t: Fraction, per_second: int) -> int:
    """``t`` in whole 1/``per_second`` units, rounded half up (exact rational arithmetic)."""
    return math.floor(t * per_second + Fraction(1, 2))


# ---------------------------------------------------------------- OTIO-based formats

def build_timeline(src: Source, segs: list[Segment], rate: float | None = None):
    """An OTIO Timeline: one video track, one clip per segment (named e.g. "Scene 3") whose
    source range is the segment's frames at the movie's rate; gaps where frames are not covered."""
    import opentimelineio as otio
    from opentimelineio import opentime

    r = float(src.frame_rate) if rate is None else rate
    tl = otio.schema.Timeline(name=src.movie_id)
    tl.global_start_time = opentime.RationalTime(0, r)
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    tl.tracks.append(track)
    url = src.movie_path or f"{src.movie_id}"
    if src.movie_path and Path(src.movie_path).is_absolute():
        url = Path(src.movie_path).as_uri()
    ref = otio.schema.ExternalReference(
        target_url=url, available_range=opentime.TimeRange(
            opentime.RationalTime(0, r), opentime.RationalTime(max(src.frames, segs[-1].end_frame), r)))
    tl.metadata["mega_pipe"] = {"frame_rate": f"{src.frame_rate.numerator}/"
                                              f"{src.frame_rate.denominator}",
                                "level": segs[0].level, "source": src.origin,
                                "variable_frame_rate": src.vfr}
    pos = 0
    for s in segs:
        if s.start_frame > pos:
            track.append(otio.schema.Gap(source_range=opentime.TimeRange(
                opentime.RationalTime(0, r), opentime.RationalTime(s.start_frame - pos, r))))
        clip = otio.schema.Clip(
            name=s.name, media_reference=ref.clone(),
            source_range=opentime.TimeRange(opentime.RationalTime(s.start_frame, r),
                                            opentime.RationalTime(s.frames, r)))
        clip.metadata["mega_pipe"] = {
            "level": s.level, "index": s.index, "first_shot": s.first_shot,
            "last_shot": s.last_shot, "start_s": s.start_s, "end_s": s.end_s,
            "confidence": s.confidence}
        track.append(clip)
        pos = s.end_frame
    return tl


def write_otio(src: Source, segs: list[Segment]) -> str:
    import opentimelineio as otio

    return otio.adapters.write_to_string(build_timeline(src, segs), "otio_json")


def write_edl(src: Source, segs: list[Segment]) -> str:
    """CMX 3600 through the OTIO cmx_3600 adapter, plus the FCM line it leaves out."""
    import opentimelineio as otio

    rate, _ = timecode_rate(src.frame_rate)
    text = otio.adapters.write_to_string(build_timeline(src, segs, rate), "cmx_3600", rate=rate)
    fcm = "FCM: DROP FRAME" if is_drop_frame(rate) else "FCM: NON-DROP FRAME"
    head, sep, rest = text.partition("\n\n")
    if head.startswith("TITLE:") and sep:
        return f"{head}\n{fcm}\n\n{rest}"
    return f"{fcm}\n\n{text}"


def write_fcpxml(src: Source, segs: list[Segment]) -> str:
    """FCPXML through the OTIO fcpx_xml adapter. The adapter knows frame durations only for
    integer-ish rates (OTIO issue #903: 23.976 and 29.97 come out empty): the format's
    ``frameDuration`` is set from the exact rate, its guessed ``name`` dropped, the sequence's
    ``tcFormat`` (DF/NDF) added, and every clip time checked against the exact frame / rate."""
    import opentimelineio as otio

    rate, _ = timecode_rate(src.frame_rate)
    exact = Fraction(rate).limit_denominator(1001) if rate != float(src.frame_rate) \
        else src.frame_rate
    text = otio.adapters.write_to_string(build_timeline(src, segs, rate), "fcpx_xml")
    root = ET.fromstring(text)
    for fmt in root.iter("format"):
        fmt.set("frameDuration", _fcpx_time(1 / exact))
        fmt.attrib.pop("name", None)     # the adapter's guess (via ffprobe; not an FCP name)
    for seq in root.iter("sequence"):
        seq.set("tcFormat", "DF" if is_drop_frame(rate) else "NDF")
    clips = [c for spine in root.iter("spine") for c in spine if c.tag in ("clip", "asset-clip")]
    if len(clips) != len(segs):
        raise MegaPipeError(f"fcpx_xml adapter wrote {len(clips)} clips for {len(segs)} segments")
    for c, s in zip(clips, segs):
        want = {"offset": Fraction(s.start_frame) / exact, "duration": Fraction(s.frames) / exact,
                "start": Fraction(s.start_frame) / exact}
        for key, value in want.items():
            got = _parse_fcpx_time(c.get(key, "0s"))
            if got != value:
                raise MegaPipeError(f"fcpx_xml adapter wrote {key}={c.get(key)!r} for {s.name}, "
                                    f"expected {_fcpx_time(value)}")
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE fcpxml>\n' + body + "\n"


def _fcpx_time(t: Fraction) -> str:
    return "0s" if t == 0 else (f"{t.numerator}s" if t.denominator == 1
                                else f"{t.numerator}/{t.denominator}s")


def _parse_fcpx_time(value: str) -> Fraction:
    return Fraction(value.rstrip("s"))


# ---------------------------------------------------------------- chapter formats (by hand)

def _hms(t: Fraction, digits: int, sep: str = ".") -> str:
    units = 10 ** digits
    n = _round_units(t, units)
    s, frac = divmod(n, units)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{sep}{frac:0{digits}d}"


def write_webvtt(src: Source, segs: list[Segment]) -> str:
    """WebVTT chapters (``<track kind="chapters">``): one cue per segment, millisecond times."""
    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    lines = ["WEBVTT", ""]
    for k, s in enumerate(segs):
        lines += [f"{k + 1}", f"{_hms(s.start_time, 3)} --> {_hms(s.end_time, 3)}",
                  esc(s.name), ""]
    return "\n".join(lines)


def write_ffmetadata(src: Source, segs: list[Segment]) -> str:
    """FFmpeg's metadata file with one [CHAPTER] per segment, TIMEBASE=1/1000."""
    def esc(text: str) -> str:
        for ch in ("\\", "=", ";", "#", "\n"):
            text = text.replace(ch, "\\" + ch)
        return text

    lines = [";FFMETADATA1"]
    for s in segs:
        lines += ["", "[CHAPTER]", "TIMEBASE=1/1000", f"START={_round_units(s.start_time, 1000)}",
                  f"END={_round_units(s.end_time, 1000)}", f"title={esc(s.name)}"]
    return "\n".join(lines) + "\n"


def _uid(*parts) -> int:
    """A stable non-zero 63-bit UID (Matroska wants unique, non-zero UIDs)."""
    h = hashlib.sha256("\0".join(map(str, parts)).encode()).digest()
    return (int.from_bytes(h[:8], "big") & ((1 << 63) - 1)) or 1


def write_matroska_xml(src: Source, segs: list[Segment], language: str = "eng") -> str:
    """Matroska chapters XML (mkvmerge --chapters, mkvpropedit): nanosecond times."""
    root = ET.Element("Chapters")
    ed = ET.SubElement(root, "EditionEntry")
    ET.SubElement(ed, "EditionUID").text = str(_uid(src.movie_id, segs[0].level))
    ET.SubElement(ed, "EditionFlagDefault").text = "1"
    for s in segs:
        atom = ET.SubElement(ed, "ChapterAtom")
        ET.SubElement(atom, "ChapterUID").text = str(_uid(src.movie_id, s.level, s.index))
        ET.SubElement(atom, "ChapterTimeStart").text = _hms(s.start_time, 9)
        ET.SubElement(atom, "ChapterTimeEnd").text = _hms(s.end_time, 9)
        disp = ET.SubElement(atom, "ChapterDisplay")
        ET.SubElement(disp, "ChapterString").text = s.name
        ET.SubElement(disp, "ChapterLanguage").text = language
    ET.indent(root)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE Chapters SYSTEM "matroskachapters.dtd">\n'
            + ET.tostring(root, encoding="unicode") + "\n")


CSV_COLUMNS = ("level", "index", "name", "first_shot", "last_shot", "start_frame", "end_frame",
               "start_s", "end_s", "start_timecode", "end_timecode", "confidence")


def write_csv(src: Source, segs: list[Segment]) -> str:
    """One row per segment: frames (end exclusive), presentation seconds, SMPTE timecodes."""
    rate, _ = timecode_rate(src.frame_rate)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for s in segs:
        w.writerow([s.level, s.index, s.name, s.first_shot, s.last_shot, s.start_frame,
                    s.end_frame, repr(s.start_s), repr(s.end_s), timecode(s.start_frame, rate),
                    timecode(s.end_frame, rate), "" if s.confidence is None else s.confidence])
    return buf.getvalue()


WRITERS = {"edl": write_edl, "otio": write_otio, "fcpxml": write_fcpxml, "webvtt": write_webvtt,
           "ffmetadata": write_ffmetadata, "matroska-xml": write_matroska_xml, "csv": write_csv}
FRAME_BASED = ("edl", "otio", "fcpxml", "csv")


def format_for(path: str | os.PathLike | None, fmt: str | None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise MegaPipeError(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
        return fmt
    ext = Path(path).suffix.lower() if path else ""
    if ext not in EXTENSIONS:
        raise MegaPipeError(f"cannot tell the format from {str(path)!r}: give --format "
                            f"({', '.join(FORMATS)}) or an extension "
                            f"({', '.join(sorted(EXTENSIONS))})")
    return EXTENSIONS[ext]


def notes(src: Source, fmt: str) -> list[str]:
    """What the user should know about this export (VFR, non-SMPTE rates)."""
    out = []
    if fmt in FRAME_BASED:
        rate, own = timecode_rate(src.frame_rate)
        r = f"{src.frame_rate.numerator}/{src.frame_rate.denominator}"
        if src.vfr:
            out.append(f"variable frame rate: {fmt} counts frames at the average rate {r}; "
                       "its times are not the presentation times (chapter formats use those)")
        if not own and fmt != "otio":
            out.append(f"{r} is not a timecode rate: {fmt} timecodes count the frames at {rate:g}")
    return out


def render(src: Source, fmt: str, level: str) -> str:
    segs = segments(src, level, keep_empty=(fmt == "csv"))
    if not segs:
        raise MegaPipeError(f"{src.origin}: no {level} to export")
    return WRITERS[fmt](src, segs)


def write_export(src: Source | dict, fmt: str, level: str | None, path: str | os.PathLike) -> Path:
    """Write ``level`` (default: scenes when present, else shots) of ``src`` (a :class:`Source`
    or a boundaries dict) to ``path`` in ``fmt``, atomically."""
    if isinstance(src, dict):
        src = source_of(validate(src, "boundaries"), "boundaries")
    text = render(src, fmt, level or src.default_level())
    warn_replacing(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def export(source: str | os.PathLike, out: Path | None = None, fmt: str | None = None,
           level: str | None = None, apply: Path | None = None,
           movie: Path | None = None) -> tuple[Source, list[str]]:
    """``mega-pipe export``: ``source`` (a boundaries.json or a feature folder) to ``out`` in
    ``fmt`` (default: from the extension), and/or its chapters into ``apply``, a copy of the
    movie (``movie``, default: the one the boundaries name). Every output is checked, and a
    missing level refused, before anything is written. Returns the source and one line per
    output written ("scenes as edl -> x.edl")."""
    if out is None and apply is None:
        raise MegaPipeError("give --out FILE (an export) and/or --apply MOVIE_COPY.mkv")
    if out is not None:
        check_output_file(out)
    fmt = format_for(out, fmt) if out is not None else None
    src = load_source(source)
    movie = movie or src.movie_path
    if apply is not None:
        check_apply_target(movie, apply, "--apply")
    done = []
    if out is not None:
        lvl = level or src.default_level()
        segments(src, lvl)                   # a missing level fails before anything is written
        for line in notes(src, fmt):
            log.info("note: %s", line)
        write_export(src, fmt, lvl, out)
        done.append(f"{lvl} as {fmt} -> {out}")
    if apply is not None:
        lvl = level or src.default_level(chapters=True)
        apply_chapters(src, lvl, movie, apply)
        done.append(f"{lvl} chapters + streams of {movie} -> {apply}")
    return src, done


# ---------------------------------------------------------------- chapters into a movie copy

def check_apply_target(movie: str | os.PathLike | None, out: str | os.PathLike, what: str) -> Path:
    """Fail before any work if the movie is missing or ``out`` cannot hold chapters or be written."""
    out = check_output_file(out, what)
    if out.suffix.lower() not in CHAPTER_MUXERS:
        raise MegaPipeError(f"{what} {out}: chapters need a "
                            f"{', '.join(sorted(CHAPTER_MUXERS))} file")
    if movie is None or not Path(movie).is_file():
        raise MegaPipeError(f"{what}: movie {movie} not found (give --movie)")
    if out.exists() and os.path.samefile(out, movie):
        raise MegaPipeError(f"{what} {out} is the input movie: give another file")
    return out


def apply_chapters(src: Source, level: str, movie: str | os.PathLike,
                   out: str | os.PathLike) -> Path:
    """Copy ``movie`` to ``out`` with ``level``'s segments as chapters: every stream copied
    (``-map 0 -c copy``), the movie's metadata kept, chapters from an ffmetadata file."""
    out = Path(out)
    meta = render(src, "ffmetadata", level)
    with tempfile.TemporaryDirectory(prefix="mega-pipe-chapters-") as d:
        meta_path = Path(d) / "chapters.ffmetadata"
        meta_path.write_text(meta, encoding="utf-8")
        warn_replacing(out)
        with atomic_path(out) as tmp:
            cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(movie),
                   "-f", "ffmetadata", "-i", str(meta_path), "-map", "0", "-map_metadata", "0",
                   "-map_chapters", "1", "-c", "copy", "-f", CHAPTER_MUXERS[out.suffix.lower()],
                   str(tmp)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                err = (r.stderr.strip().splitlines() or ["unknown error"])[-1]
                raise MegaPipeError(f"ffmpeg could not copy {movie} with chapters to {out}: {err}")
    return out
