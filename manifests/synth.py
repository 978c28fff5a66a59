"""Synthetic feature-level benchmark: movies in the extract contract with planted structure.

Why this exists: the real training sets (MovieNet-318, TRIPOD + videos) cannot be shipped, but the
trainer must be shown to *learn*. This generator writes movies exactly as ``mega-pipe extract``
would (``shots.parquet``, ``synopsis.parquet``, ``manifest.json``; docs/contract.md) plus a
``manifest.jsonl`` with splits and gold labels, so ``mega-pipe train`` / ``eval`` run on it
unchanged.

What is planted (all random draws are seeded; movie ``i`` depends only on ``(seed, i)``):

* **Scene structure from a real film.** Shots-per-scene and shot durations are resampled from the
  human-curated Forrest Gump annotations (studyforrest ``shots.csv`` / ``scenes.csv``): median
  2 shots per scene, many one-shot scenes, durations from 0.1 s to minutes.
* **Scene features.** Each scene has a latent vector: one of ``n_settings`` recurring settings
  shared by all movies (like the locations and times of day of real films; the next scene never
  keeps the setting) plus a scene-specific part. Each shot is its scene latent plus per-shot
  noise, so one adjacent-shot distance is an unreliable boundary cue; the window context
  (spec §1.3) and the combination of modalities are what make boundaries recoverable.
* **Framing.** Each shot also has one of a few framings shared by all movies (close-up, wide,
  reverse shot...); a scene cuts back and forth between two of them, so features jump at many
  cuts inside scenes too. This nuisance is what makes a plain feature distance a weak boundary
  detector while a learned model can project it away.
* **Modalities.** Each modality sees a random subset of the latent dimensions through its own
  random projection, plus its own noise and a per-movie offset (which the trainer's feature
  normalisation has to cope with).
* **Turning points.** Five TPs per movie near TRIPOD's typical positions (spec §1.6: 11, 32, 51,
  74, 89 % with a few % jitter). The 1–3 gold shots of TP n carry a weak TP-specific direction in
  the latent space, so the TP is found by combining position with content, not by position alone.
* **Synopsis.** 20–40 sentences; sentence j describes a contiguous run of scenes in story order
  (its vector is the projected mean latent of those scenes plus noise), so shot↔sentence
  synchronisation (spec §1.4a) has a content signal to find (docs/training.md reports how far
  the current EM synchronisation gets). Each TP's scene gets its own sentence, which carries
  the TP direction too; these are the gold ``tp_sentences``.

**Variant "relational"** (``variant="relational"``, ``manifest synth --variant relational``):
nothing a model could memorise recurs across movies. Every scene latent is drawn afresh (no
shared settings), and every scene films its content from 1–3 camera set-ups whose framing
vectors are also fresh draws (no shared framings), cycled through inside the scene the way
shot / reverse shot alternates. Modality projections, noise and the TP structure are as in the
default variant (shared projections are like shared encoders on real films). A boundary is
then marked only by *within-movie similarity*: a shot resembles the shots of its own set-up
in its own scene, and nothing learned from other movies' content helps.

**Variant "context"** (``variant="context"``): the turning points are carried by a *change of the
movie's context*, not by any direction shared across movies. Scenes and set-ups are fresh draws
as in "relational"; on top, each of the six acts has its own situation — a fresh latent of this
movie, added to every scene of the act (``context_strength``) — so a turning point is where the
situation the next scenes share changes (its gold shots open the new act). Nothing marks a TP
shot by itself; a model has to compare a shot's context before and after it. The synopsis
sentences describe their scenes (situation included) and a TP sentence also carries a textual
cue of its TP type (``tp_text``, a fixed direction of the *sentence* space, like the words
synopses use for turning points), so the synopsis model can find TP sentences from their text
and synchronisation has to carry the labels to the shots (docs/training.md, "The TRIPOD
setting").

**Variant "alignment"** (``variant="alignment"``): the turning points are carried by the
*sentence–shot alignment* alone. Scenes and set-ups are fresh draws as in "relational"; nothing
is added to a TP shot and no act has a situation of its own, so the video by itself says
nothing about where a TP is beyond TRIPOD's typical positions. The TP sentence carries the
textual cue of its TP type as in "context" and describes its scene, so a model finds a TP only
by reading the synopsis and matching that sentence to the shots it describes.

**Variant "crossmodal"** (``variant="crossmodal"``): the turning points are carried by *one
modality relative to the others*. As "alignment", plus: at a TP's gold shots the last modality
(in name order) observes a fresh latent instead of the scene's, while every other modality sees
the scene as usual — the picture and (say) the sound disagree. Each modality alone looks like
any other shot; only their relation, which the shared projections make learnable, marks the TP
in the video; the synopsis marks it as in "alignment".

``tripod_setting=True`` (``manifest synth --tripod-setting``) writes the training movies
without ``tp_shots``: only their synopsis sentences are labelled, as on TRIPOD; validation and
test movies keep their shot gold for evaluation.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np

from .atomic import check_output_dir
from .errors import MegaPipeError
from .features import (
    CONTRACT_VERSION,
    FeatureFolder,
    shots_table,
    synopsis_table,
)
from .provenance import code_version
from .schema import MovieEntry, write_manifest

#: Written in every movie folder's manifest.json (``config.generator``): how a set is recognised.
GENERATOR = "mega_pipe.manifests.synth"

#: Where the studyforrest structure annotations live; overridable for other checkouts.
STRUCTURE_DIR_ENV = "MEGA_PIPE_STRUCTURE_DIR"
DEFAULT_STRUCTURE_DIR = Path(__file__).resolve().parent / "studyforrest"   # shipped (CC0)

#: Mean TP positions (fraction of the movie) from TRIPOD's statistics, spec §1.6.
TRIPOD_TP_POSITIONS = (0.1139, 0.3186, 0.5065, 0.7415, 0.8943)

VARIANTS = ("default", "relational", "context", "alignment", "crossmodal")
#: The variants whose TP shots carry no shared direction: the TP sentence has a textual cue instead.
TEXT_CUE_VARIANTS = ("context", "alignment", "crossmodal")

FPS = 24  # frame numbers are written at MovieNet's 24 fps (spec §2.1, Recall@3s)


@dataclass(frozen=True)
class SynthParams:
    """Difficulty knobs of the benchmark (a config, recorded in every movie's manifest.json)."""

    latent_dim: int = 16             # scene content dimensions
    n_settings: int = 16             # recurring settings (location/time of day), shared by all movies
    setting_share: float = 0.9       # fraction of a scene latent's variance that is its setting
    shot_noise: float = 0.5          # per-shot deviation from the scene latent (per latent dim)
    framing_dim: int = 8             # shot-framing dimensions (close-up, wide, reverse shot, ...)
    n_framings: int = 6              # framings shared by all movies; a scene cuts between 2 of them
    framing_strength: float = 1.5    # per-dim scale of the framing part
    modality_noise: float = 0.5      # per-modality observation noise (per feature dim)
    modality_view: float = 0.75      # fraction of latent dims each modality observes
    movie_offset: float = 1.0        # scale of the per-movie, per-modality feature offset
    tp_strength: float = 2.5         # norm of the TP direction added to gold TP shots
    tp_jitter: float = 0.03          # std of TP position around TRIPOD's mean positions
    scenes: tuple[int, int] = (40, 80)      # scenes per movie, inclusive range
    sentences: tuple[int, int] = (20, 40)   # synopsis sentences per movie, inclusive range
    sentence_dim: int = 48
    sentence_noise: float = 0.3
    tp_sentence_strength: float = 2.0
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.6, "val": 0.2, "test": 0.2})
    variant: str = "default"         # "default" (shared settings/framings) or "relational" (see above)
    setups: tuple[int, int] = (1, 3)  # relational, context: camera set-ups per scene, inclusive range
    context_strength: float = 1.0    # context: scale (per latent dim) of each act's situation

    def __post_init__(self) -> None:
        if not 5 <= self.scenes[0] <= self.scenes[1]:
            raise MegaPipeError(f"scenes must be a range (lo, hi) with 5 <= lo <= hi (five TP scenes), got {self.scenes}")
        if not 1 <= self.sentences[0] <= self.sentences[1]:
            raise MegaPipeError(f"sentences must be a range (lo, hi) with 1 <= lo <= hi, got {self.sentences}")
        if self.n_framings < 2 or self.n_settings < 2:
            raise MegaPipeError("n_settings and n_framings must be at least 2")
        if self.variant not in VARIANTS:
            raise MegaPipeError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not 1 <= self.setups[0] <= self.setups[1]:
            raise MegaPipeError(f"setups must be a range (lo, hi) with 1 <= lo <= hi, got {self.setups}")


@dataclass(frozen=True)
class _Structure:
    """Empirical distributions drawn from the real film annotation."""

    shot_durations: np.ndarray   # seconds, > 0
    shots_per_scene: np.ndarray  # ints >= 1


@dataclass(frozen=True)
class _World:
    """Dataset-level random parameters shared by every movie of one seed."""

    projections: dict[str, np.ndarray]   # modality -> (latent_dim + framing_dim, D_m)
    settings: np.ndarray                 # (n_settings, latent_dim) setting prototypes
    framings: np.ndarray                 # (n_framings, framing_dim) framing prototypes
    tp_directions: np.ndarray            # (5, latent_dim), unit norm
    sentence_projection: np.ndarray      # (latent_dim, sentence_dim)
    tp_text: np.ndarray                  # (5, sentence_dim) textual TP cues (context, alignment, crossmodal)


def load_structure(structure_dir: str | os.PathLike | None = None) -> _Structure:
    """Read shot durations and shots-per-scene from the studyforrest annotations."""
    root = Path(structure_dir or os.environ.get(STRUCTURE_DIR_ENV) or DEFAULT_STRUCTURE_DIR)
    try:
        shot_starts = np.loadtxt(root / "shots.csv", delimiter=",", skiprows=1, usecols=0)
        scene_starts = np.loadtxt(root / "scenes.csv", delimiter=",", skiprows=1, usecols=0)
    except OSError as exc:
        raise MegaPipeError(
            f"studyforrest structure annotations not found in {root} (set {STRUCTURE_DIR_ENV})"
        ) from exc
    shot_starts = np.unique(shot_starts)  # the file repeats a few start times
    durations = np.diff(shot_starts)
    # A scene starts at the shot whose start is nearest (89 % coincide exactly; the rest are
    # annotated a few seconds off the cut).
    first_shot = np.unique(np.abs(scene_starts[:, None] - shot_starts[None, :]).argmin(axis=1))
    counts = np.diff(np.append(first_shot, len(shot_starts)))
    return _Structure(shot_durations=durations[durations > 0], shots_per_scene=counts[counts > 0])


def _make_world(rng: np.random.Generator, modalities: Mapping[str, int], p: SynthParams) -> _World:
    projections = {}
    n_seen = max(1, round(p.modality_view * p.latent_dim))
    n_in = p.latent_dim + p.framing_dim
    for name, dim in modalities.items():
        proj = rng.normal(size=(n_in, dim)) / np.sqrt(n_in)
        unseen = rng.permutation(p.latent_dim)[n_seen:]  # content dims this modality misses
        proj[unseen] = 0.0
        projections[name] = proj
    tp = rng.normal(size=(5, p.latent_dim))
    tp /= np.linalg.norm(tp, axis=1, keepdims=True)
    sent = rng.normal(size=(p.latent_dim, p.sentence_dim)) / np.sqrt(p.latent_dim)
    settings = rng.normal(size=(p.n_settings, p.latent_dim))
    framings = rng.normal(size=(p.n_framings, p.framing_dim))
    tp_text = rng.normal(size=(5, p.sentence_dim))
    tp_text /= np.linalg.norm(tp_text, axis=1, keepdims=True)
    return _World(projections, settings, framings, tp, sent, tp_text)


@dataclass
class _Movie:
    """One generated movie before it is written."""

    shot_starts: np.ndarray      # (n_shots,) seconds
    shot_ends: np.ndarray        # (n_shots,) seconds
    scene_of_shot: np.ndarray    # (n_shots,) scene index
    features: dict[str, np.ndarray]
    sentences: np.ndarray        # (n_sentences, sentence_dim)
    sentence_scenes: list[tuple[int, int]]  # [first, last] scene of each sentence
    tp_shots: list[list[int]]
    tp_sentences: list[list[int]]


def _shared_latents(rng: np.random.Generator, world: _World, n_scenes: int, p: SynthParams) -> np.ndarray:
    """Default variant: scene latents (n_scenes, latent_dim)."""
    # Scene latents: a recurring setting (never the same as the previous scene's) plus a
    # scene-specific part, so scenes are recognisable across movies but never identical.
    settings = np.empty(n_scenes, dtype=int)
    settings[0] = rng.integers(p.n_settings)
    for s in range(1, n_scenes):
        settings[s] = (settings[s - 1] + rng.integers(1, p.n_settings)) % p.n_settings
    z = np.sqrt(p.setting_share) * world.settings[settings]
    z += np.sqrt(1.0 - p.setting_share) * rng.normal(size=(n_scenes, p.latent_dim))
    return z


def _shared_framing(rng: np.random.Generator, world: _World, n_scenes: int, scene_of_shot: np.ndarray,
                    p: SynthParams) -> np.ndarray:
    """Default variant: per-shot framing part (n_shots, framing_dim)."""
    n_shots = len(scene_of_shot)
    # Framing: every scene cuts between two framings (shot / reverse shot), so the features
    # also jump at many cuts *inside* a scene; a learned model can ignore this subspace, a
    # plain feature distance cannot.
    pairs = np.stack([rng.choice(p.n_framings, size=2, replace=False) for _ in range(n_scenes)])
    framing = pairs[scene_of_shot, rng.integers(0, 2, size=n_shots)]
    return p.framing_strength * world.framings[framing]


def _relational_content(rng: np.random.Generator, n_scenes: int, scene_of_shot: np.ndarray,
                        p: SynthParams) -> tuple[np.ndarray, np.ndarray]:
    """Relational variant: every scene latent and every camera set-up is a fresh draw of this
    movie (nothing recurs across movies); a scene's 1–3 set-ups are cycled through from a random
    first one, like shot / reverse shot."""
    z = rng.normal(size=(n_scenes, p.latent_dim))
    n_setups = rng.integers(p.setups[0], p.setups[1] + 1, size=n_scenes)
    setups = rng.normal(size=(n_scenes, p.setups[1], p.framing_dim))
    first = np.searchsorted(scene_of_shot, np.arange(n_scenes))
    k = np.arange(len(scene_of_shot)) - first[scene_of_shot]              # shot's rank in its scene
    which = (k + rng.integers(0, p.setups[1], size=n_scenes)[scene_of_shot]) % n_setups[scene_of_shot]
    return z, p.framing_strength * setups[scene_of_shot, which]


def _generate_movie(rng: np.random.Generator, world: _World, st: _Structure, p: SynthParams) -> _Movie:
    n_scenes = int(rng.integers(p.scenes[0], p.scenes[1] + 1))
    per_scene = rng.choice(st.shots_per_scene, size=n_scenes)
    scene_of_shot = np.repeat(np.arange(n_scenes), per_scene)
    n_shots = len(scene_of_shot)
    durations = rng.choice(st.shot_durations, size=n_shots)
    ends = np.cumsum(durations)
    starts = ends - durations

    if p.variant != "default":      # fresh scenes and set-ups: nothing recurs across movies
        z, look = _relational_content(rng, n_scenes, scene_of_shot, p)
        h = z[scene_of_shot] + p.shot_noise * rng.normal(size=(n_shots, p.latent_dim))
    else:   # draw order kept as before the variants existed: the default sets are unchanged
        z = _shared_latents(rng, world, n_scenes, p)
        h = z[scene_of_shot] + p.shot_noise * rng.normal(size=(n_shots, p.latent_dim))
        look = _shared_framing(rng, world, n_scenes, scene_of_shot, p)

    # Turning points: jittered TRIPOD positions, in order, on five distinct scenes.
    positions = np.sort(np.clip(np.array(TRIPOD_TP_POSITIONS) + p.tp_jitter * rng.normal(size=5), 0.02, 0.98))
    first_shot = np.searchsorted(scene_of_shot, np.arange(n_scenes + 1))  # scene -> its first shot
    tp_shots: list[list[int]] = []
    previous = -1
    for n, position in enumerate(positions):
        c = int(position * n_shots)
        scene = int(min(max(scene_of_shot[c], previous + 1), n_scenes - (5 - n)))
        c = min(max(c, first_shot[scene]), first_shot[scene + 1] - 1)
        width = int(rng.integers(1, 4))
        gold = list(range(c, min(c + width, first_shot[scene + 1])))  # gold stays inside one scene
        tp_shots.append(gold)
        previous = scene
        if p.variant not in TEXT_CUE_VARIANTS:
            h[gold] += p.tp_strength * world.tp_directions[n]
    if p.variant == "context":      # each act's situation, from its opening TP shot on
        situation = p.context_strength * rng.normal(size=(6, p.latent_dim))
        act_of_scene = np.searchsorted([scene_of_shot[g[0]] for g in tp_shots],
                                       np.arange(n_scenes), side="right")
        z = z + situation[act_of_scene]
        h = h + situation[act_of_scene[scene_of_shot]]

    seen = {name: h for name in world.projections}
    if p.variant == "crossmodal":   # at the TP shots the last modality sees something else
        odd = sorted(world.projections)[-1]
        seen[odd] = h.copy()
        for gold in tp_shots:
            seen[odd][gold] = rng.normal(size=p.latent_dim) + p.shot_noise * rng.normal(size=(len(gold), p.latent_dim))
    features = {}
    for name, proj in world.projections.items():
        offset = p.movie_offset * rng.normal(size=proj.shape[1])
        x = np.hstack([seen[name], look]) @ proj + offset + p.modality_noise * rng.normal(size=(n_shots, proj.shape[1]))
        features[name] = x.astype(np.float32)

    # Synopsis: contiguous scene runs in story order; every TP scene is a sentence of its own.
    tp_scenes = sorted({int(scene_of_shot[g[0]]) for g in tp_shots})
    forced = {s for t in tp_scenes for s in (t, t + 1) if 0 < s < n_scenes}
    n_sent = int(rng.integers(p.sentences[0], p.sentences[1] + 1))
    free = np.setdiff1d(np.arange(1, n_scenes), sorted(forced))
    extra = max(0, min(len(free), n_sent - 1 - len(forced)))
    cuts = sorted(forced | set(rng.choice(free, size=extra, replace=False).tolist()))
    bounds = [0, *cuts, n_scenes]
    sentence_scenes = [(bounds[j], bounds[j + 1] - 1) for j in range(len(bounds) - 1)]
    sentence_of_scene = np.repeat(np.arange(len(sentence_scenes)), np.diff(bounds))
    sentences = np.stack([z[a : b + 1].mean(axis=0) for a, b in sentence_scenes]) @ world.sentence_projection
    tp_sentences = []
    for n, gold in enumerate(tp_shots):
        j = int(sentence_of_scene[scene_of_shot[gold[0]]])
        tp_sentences.append([j])
        cue = (world.tp_text[n] if p.variant in TEXT_CUE_VARIANTS
               else world.tp_directions[n] @ world.sentence_projection)
        sentences[j] += p.tp_sentence_strength * cue
    sentences += p.sentence_noise * rng.normal(size=sentences.shape)

    return _Movie(
        shot_starts=starts,
        shot_ends=ends,
        scene_of_shot=scene_of_shot,
        features=features,
        sentences=sentences.astype(np.float32),
        sentence_scenes=sentence_scenes,
        tp_shots=tp_shots,
        tp_sentences=tp_sentences,
    )


class _Shot(NamedTuple):
    """The shot fields ``contract.write_shots`` reads."""

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float


def format_modalities(modalities: Mapping[str, int]) -> str:
    """``{"clip": 32, ...}`` -> ``"clip:32,..."``, the form ``--modalities`` reads."""
    return ",".join(f"{m}:{d}" for m, d in modalities.items())


def _model_meta(dim: int) -> dict:
    return {"dim": dim, "model_id": "synthetic", "weights_sha256": None, "sampling": "synthetic per shot"}


def _write_movie(folder: Path, movie_id: str, movie: _Movie, modalities: Mapping[str, int], p: SynthParams,
                 seed: int, version: dict) -> None:
    """Write one movie folder in the extract contract, the manifest last."""
    out = FeatureFolder(folder)
    n = len(movie.shot_starts)
    start_frames = np.round(movie.shot_starts * FPS).astype(np.int64)
    end_frames = np.maximum(np.round(movie.shot_ends * FPS).astype(np.int64), start_frames + 1)
    shots = [
        _Shot(i, int(start_frames[i]), int(end_frames[i]), start_frames[i] / FPS, end_frames[i] / FPS)
        for i in range(n)
    ]
    meta = {m: _model_meta(d) for m, d in modalities.items()}
    pooled = {m: (movie.features[m], np.ones(n, dtype=np.int32)) for m in modalities}
    out.write_shots(shots_table(movie_id, shots, pooled, meta))
    texts = [f"Scenes {a}-{b} of {movie_id} happen." for a, b in movie.sentence_scenes]
    out.write_synopsis(synopsis_table(movie_id, texts, movie.sentences,
                                      _model_meta(movie.sentences.shape[1])))
    out.write_manifest({
        "contract": CONTRACT_VERSION,
        "movie_id": movie_id,
        "code_version": version,
        "source": {"synthetic": True, "seed": seed},
        "probe": {"duration_s": float(end_frames[-1] / FPS), "video": {"frame_rate": f"{FPS}/1"}},
        "config": {"generator": GENERATOR, **asdict(p)},
        "models": meta,
        "stages": {},
        "outputs": out.outputs(list(modalities), synopsis=True),
        "warnings": [],
    })


def _assign_splits(rng: np.random.Generator, n_movies: int, fractions: Mapping[str, float]) -> list[str]:
    """Split sizes by largest remainder, then a seeded shuffle (every split non-empty if possible)."""
    names = list(fractions)
    total = sum(fractions.values())
    raw = np.array([fractions[k] / total * n_movies for k in names])
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes))[: n_movies - sizes.sum()]:
        sizes[i] += 1
    labels = np.repeat(names, sizes).tolist()
    return [labels[i] for i in rng.permutation(n_movies)]


def generate(
    out_dir: str | os.PathLike,
    n_movies: int,
    seed: int = 0,
    *,
    modalities: Mapping[str, int],
    params: SynthParams | None = None,
    structure_dir: str | os.PathLike | None = None,
    variant: str | None = None,
    tripod_setting: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``n_movies`` synthetic movies under ``out_dir`` and return the manifest path.

    ``modalities`` maps modality name -> feature dimension (``mega-pipe manifest synth`` gives
    the ``tiny`` extractor set's by default, so that a checkpoint trained on the set segments a
    movie extracted with ``--models tiny``).
    Every movie has gold ``scene_labels`` (1 = last shot of its scene; the movie's last shot is
    unlabelled, as in MovieNet), ``tp_sentences`` and
    ``tp_shots`` (with ``tripod_setting``, training movies have none: module docstring); the
    split fractions come from ``params.splits``. ``variant`` (None: the params') picks
    "default", "relational" or "context" (module docstring).

    A folder that already holds a set (:func:`existing_set`) is refused, nothing touched;
    ``overwrite`` replaces it: the old set's movie folders are removed (only those: other files
    in ``out_dir`` stay) and the new set written.
    """
    if n_movies < 1:
        raise MegaPipeError(f"--movies must be at least 1 (got {n_movies})")
    check_output_dir(out_dir, "OUT")
    old = existing_set(out_dir)
    if old is not None and not overwrite:
        raise MegaPipeError(f"{out_dir} already holds a synthetic set ({old[0]}); use --overwrite "
                            "to replace it, or another OUT")
    modalities = dict(modalities)
    if not modalities:
        raise MegaPipeError("no modalities: give at least one, e.g. clip:32")
    p = params or SynthParams()
    if variant is not None:
        p = replace(p, variant=variant)
    structure = load_structure(structure_dir)
    if old is not None:
        for folder in old[1]:          # the old set's movie folders, nothing else
            shutil.rmtree(folder)
    world = _make_world(np.random.default_rng([seed, 0x5EED]), modalities, p)
    splits = _assign_splits(np.random.default_rng([seed, 0x5B17]), n_movies, p.splits)
    out = Path(out_dir)
    version = code_version()
    entries = []
    for i in range(n_movies):
        movie_id = f"synth{i:04d}"
        movie = _generate_movie(np.random.default_rng([seed, i]), world, structure, p)
        folder = out / movie_id
        _write_movie(folder, movie_id, movie, modalities, p, seed, version)
        # The movie's last shot trivially ends a scene; like MovieNet it is left unlabelled.
        scene_end = (movie.scene_of_shot[1:] != movie.scene_of_shot[:-1]).astype(int).tolist()
        entries.append(
            MovieEntry(
                movie_id=movie_id,
                features=folder,
                split=splits[i],
                scene_labels=[*scene_end, None],
                tp_sentences=movie.tp_sentences,
                tp_shots=None if tripod_setting and splits[i] == "train" else movie.tp_shots,
                shot_scenes=movie.scene_of_shot.tolist(),
            )
        )
    manifest = out / "manifest.jsonl"
    write_manifest(manifest, entries)
    return manifest


_MOVIE_FOLDER = re.compile(r"synth\d{4,}")


def existing_set(out_dir: str | os.PathLike) -> tuple[str, list[Path]] | None:
    """What of a synthetic set ``out_dir`` already holds: a description ("manifest.jsonl, 12
    movie folders") and the movie folders this generator wrote there (``synthNNNN/`` whose manifest
    names it); None when it holds neither those nor a manifest.jsonl."""
    out = Path(out_dir)
    if not out.is_dir():
        return None
    folders = []
    for d in sorted(out.iterdir()):
        if not (d.is_dir() and _MOVIE_FOLDER.fullmatch(d.name)):
            continue
        try:
            made = json.loads((d / FeatureFolder.MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(made, dict) and (made.get("config") or {}).get("generator") == GENERATOR:
            folders.append(d)
    manifest = out / "manifest.jsonl"
    if not folders and not manifest.exists():
        return None
    parts = (["manifest.jsonl"] if manifest.exists() else []) + \
        ([f"{len(folders)} movie folder{'' if len(folders) == 1 else 's'}"] if folders else [])
    return ", ".join(parts), folders


def parse_modalities(text: str) -> dict[str, int]:
    """``"clip:32,place:48"`` -> ``{"clip": 32, "place": 48}`` (the inverse of :func:`format_modalities`)."""
    try:
        return {name: int(dim) for name, dim in (item.split(":") for item in text.split(","))}
    except ValueError as exc:
        raise MegaPipeError(f"--modalities must look like clip:32,place:32 (got {text!r})") from exc
