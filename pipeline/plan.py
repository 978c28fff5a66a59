"""Planning one movie's extraction: what the movie has, what is cached, what must be computed.

:func:`plan_movie` reads only the probe, the subtitle/synopsis inputs and the cache keys stored in
the feature folder's files; it writes nothing and needs no deep-learning library, so a run is
planned (and fails on a bad input) before FFmpeg or any model starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..manifests.errors import InputError, MegaPipeError
from ..manifests.features import CONTRACT_VERSION, DETECTION_KEY, FeatureFolder
from .cache import bytes_fingerprint, file_fingerprint, stage_key
from .inputs import ExtractConfig, MovieInput
from .models import ExtractorPool
from .probe import ProbeInfo
from .subtitles import (
    Cue,
    read_embedded_subtitles,
    read_subtitle_file,
    text_subtitle_streams,
)
from .synopsis import read_synopsis

DECODED = ("frame", "clip", "audio")   # samplings produced by the decode pass
TEXT = "text"


@dataclass
class MoviePlan:
    """What a run does to one movie folder."""

    movie_id: str
    folder: FeatureFolder
    fingerprint: str                       # of the video file (pipeline/cache.py)
    previous: dict | None                  # the folder's manifest, when complete
    wanted: list[str]                      # modalities asked for that the movie has
    absent: dict[str, str]                 # modalities asked for that it lacks -> why
    samplings: dict[str, str]              # modality -> what one sample is
    keys: dict[str, str]                   # modality -> cache key of its samples file
    shots_key: str                         # cache key of the shot detection
    pool_key: str                          # cache key of shots.parquet as a whole
    todo: list[str]                        # modalities whose samples must be computed
    shots_cached: bool
    cues: list | None = None               # subtitle cues, when the movie has any
    cue_source: str | None = None
    synopsis: dict | None = None           # sentences, key, todo
    warnings: list[str] = field(default_factory=list)

    @property
    def up_to_date(self) -> bool:
        """Every output is cached and the folder is complete: nothing to do."""
        return (self.previous is not None and not self.todo
                and self.folder.cached_key(FeatureFolder.SHOTS) == self.pool_key
                and not (self.synopsis and self.synopsis["todo"]))

    @property
    def decode_modalities(self) -> list[str]:
        return [m for m in self.todo if self.samplings[m] in DECODED]

    @property
    def text_modalities(self) -> list[str]:
        """The modalities whose text encoder this run needs (the synopsis uses the subtitle one)."""
        mods = [m for m in self.todo if self.samplings[m] == TEXT]
        if self.synopsis and self.synopsis["todo"] and "subtitle" not in mods:
            mods.append("subtitle")
        return mods

    @property
    def needs_decoding(self) -> bool:
        return bool(self.decode_modalities) or not self.shots_cached


def plan_movie(inp: MovieInput, info: ProbeInfo, folder: FeatureFolder, movie_id: str,
               cfg: ExtractConfig, extractors: ExtractorPool) -> MoviePlan:
    """The plan for one movie (see :class:`MoviePlan`); raises if the folder holds another movie."""
    video = Path(inp.video)
    fingerprint = file_fingerprint(video)
    previous = folder.read_manifest()
    if previous and previous["source"]["fingerprint"] != fingerprint \
            and previous["source"]["path"] != str(video.resolve()):
        raise MegaPipeError(f"{folder} holds the features of another movie "
                            f"({previous['source']['path']}): give {video} another --id or --out")
    warnings: list[str] = []
    wanted, absent, cues, cue_source = _available_modalities(inp, info, cfg, extractors, warnings)
    samplings = {m: extractors.sampling(m) for m in wanted}
    keys = {m: _samples_key(m, samplings[m], extractors, fingerprint, info, cues) for m in wanted}
    shots_key = stage_key(source=fingerprint, detector=cfg.detector.to_json(),
                          frame_size=extractors.frame_size)
    synopsis = _synopsis_input(inp, extractors)
    if synopsis:
        synopsis["todo"] = folder.cached_key(FeatureFolder.SYNOPSIS) != synopsis["key"]
    pool_key = stage_key(shots=shots_key, **{m: keys[m] for m in wanted},
                         synopsis=synopsis["key"] if synopsis else None,
                         **({"absent": absent} if absent else {}))
    return MoviePlan(
        movie_id=movie_id, folder=folder, fingerprint=fingerprint, previous=previous,
        wanted=wanted, absent=absent, samplings=samplings, keys=keys, shots_key=shots_key,
        pool_key=pool_key,
        todo=[m for m in wanted
              if folder.cached_key(f"{FeatureFolder.SAMPLES}/{m}.parquet") != keys[m]],
        shots_cached=folder.cached_key(FeatureFolder.SHOTS, DETECTION_KEY) == shots_key,
        cues=cues, cue_source=cue_source, synopsis=synopsis, warnings=warnings)


def _available_modalities(inp: MovieInput, info: ProbeInfo, cfg: ExtractConfig,
                          extractors: ExtractorPool, warnings: list[str]) -> tuple:
    """(wanted, absent, cues, cue_source): the requested modalities the movie has, and those it
    lacks with the reason. A modality the run asks for but the movie lacks stays in
    shots.parquet as an absent (all-null) column, so every movie of one run has the same schema
    (docs/contract.md)."""
    wanted = list(extractors.modalities)
    absent: dict[str, str] = {}
    if "audio" in wanted and info.audio is None:
        wanted.remove("audio")
        absent["audio"] = "movie has no audio stream"
        warnings.append("no audio stream: audio features absent")
    elif "audio" in wanted and len(info.audio_tracks) > 1 and cfg.audio_track is None:
        warnings.append(_track_note("audio", len(info.audio_tracks), info.audio.track,
                                    info.audio.language))
    cues, cue_source = _subtitle_cues(inp, info, warnings) if "subtitle" in wanted else (None, None)
    if "subtitle" in wanted and not cues:
        wanted.remove("subtitle")
        absent["subtitle"] = "movie has no subtitles"
        if cue_source is None:
            warnings.append("no subtitles (no --subtitles file, sidecar or text stream): "
                            "subtitle features absent")
    return wanted, absent, cues, cue_source


def _samples_key(m: str, sampling: str, extractors: ExtractorPool, fingerprint: str,
                 info: ProbeInfo, cues: list | None) -> str:
    """The cache key of modality ``m``'s samples: the registry entry (which identifies the
    weights and their preprocessing) plus the input: the video (and the decoded audio stream
    and working resolution), or the cues themselves, whichever file or track they came from.
    A bf16 forward pass is part of the key (fp32, the default, adds nothing: keys of runs made
    before the option existed stay valid)."""
    entry = extractors.entries[m]
    base = dict(contract=CONTRACT_VERSION, modality=m, model=entry.name, sha=entry.sha256,
                preprocess=entry.preprocess)
    if extractors.cfg.encoder_precision != "fp32":
        base["precision"] = extractors.cfg.encoder_precision
    if sampling == TEXT:
        return stage_key(**base, cues=bytes_fingerprint(
            json.dumps([[c.start_s, c.end_s, c.text] for c in cues]).encode()))
    track = {"audio_stream": info.audio.index} if sampling == "audio" else {}
    return stage_key(**base, source=fingerprint, frame_size=extractors.frame_size, **track)


def _subtitle_cues(inp: MovieInput, info: ProbeInfo, warnings: list) -> tuple:
    """Cues from ``--subtitles``, else the stream ``--subtitle-track`` chose, else a sidecar next
    to the video, else the first embedded text stream."""
    video = Path(inp.video)
    path = inp.subtitles
    if path is not None and info.subtitle_track is not None:
        raise InputError("--subtitles and --subtitle-track exclude each other")
    if path is None and info.subtitle_track is None:
        path = next((c for c in map(video.with_suffix, (".srt", ".vtt", ".ass", ".ssa"))
                     if c.exists()), None)
    # Cue times count from the container's start; our timeline from the first video frame.
    shift = float(info.video.start_time or 0) - info.start_time

    def shifted(cues):
        return [Cue(c.start_s - shift, c.end_s - shift, c.text) for c in cues
                if c.end_s - shift > 0] if shift else cues

    if path is not None:
        cues, w = read_subtitle_file(path)
        warnings += w
        return shifted(cues), str(Path(path).resolve())
    streams = text_subtitle_streams(video) if info.subtitles else []
    text_streams = [s for s in streams if s["is_text"]]
    chosen = (streams[info.subtitle_track] if info.subtitle_track is not None
              else text_streams[0] if text_streams else None)
    if chosen:
        if info.subtitle_track is None and len(text_streams) > 1:
            warnings.append(_track_note("subtitle", len(text_streams), chosen["index"],
                                        chosen["language"]))
        cues, w = read_embedded_subtitles(video, chosen["index"])   # a bitmap stream: error
        warnings += w
        return shifted(cues), f"subtitle stream {chosen['index']}"
    if info.subtitles:
        warnings.append("only bitmap subtitle streams: subtitle features absent")
    return None, None


def _track_note(kind: str, n: int, track: int, language: str | None) -> str:
    return (f"{n} {kind} tracks, using #{track} ({language or 'no language tag'}); "
            f"choose with --{kind}-track")


def _synopsis_input(inp: MovieInput, extractors: ExtractorPool) -> dict | None:
    if inp.synopsis is None:
        return None
    sentences = read_synopsis(inp.synopsis, one_per_line=inp.synopsis_lines)
    e = extractors.entries["subtitle"]
    key = stage_key(contract=CONTRACT_VERSION, model=e.name, sha=e.sha256,
                    sentences=bytes_fingerprint("\n".join(sentences).encode()))
    return {"sentences": sentences, "key": key}
