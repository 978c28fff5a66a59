"""What an extraction is asked to do: its configuration and its inputs (the first stage of
docs/architecture.md; every later stage imports these types, none is imported here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .shots import DetectorConfig


@dataclass(frozen=True)
class ExtractConfig:
    model_set: str = "paper"
    modalities: tuple[str, ...] | None = None   # None: every modality the movie has
    device: str = "auto"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    frame_size: int | None = None               # short side of the decoded frames; None: auto
    weights_dirs: tuple[Path, ...] = ()
    offline: bool = False
    allow_download: bool = False
    progress: bool = True
    audio_track: str | None = None     # --audio-track: a number among the audio streams or a
    subtitle_track: str | None = None  # language tag; likewise --subtitle-track. None: automatic
    strict: bool = False               # warnings fail the movie (not recorded: changes no output)

    def to_json(self) -> dict:
        return {"model_set": self.model_set, "modalities": list(self.modalities or []) or None,
                "device": self.device, "detector": self.detector.to_json(),
                "frame_size": self.frame_size, "offline": self.offline,
                "audio_track": self.audio_track, "subtitle_track": self.subtitle_track}


@dataclass(frozen=True)
class MovieInput:
    video: Path
    subtitles: Path | None = None
    synopsis: Path | None = None
    movie_id: str | None = None
    synopsis_lines: bool = False     # the synopsis file has one sentence per line

    @property
    def source(self) -> Path:
        """The path that names this input (in messages, and the default movie id's stem)."""
        return Path(self.video)


def movie_id_of(inp) -> str:
    """``--id``, else the stem of the input's ``source`` (the video; a key-frame folder)."""
    return inp.movie_id or Path(inp.source).stem
