"""Training and inference data: feature folders (docs/contract.md) -> normalised arrays -> batches.

Everything downstream of ``mega-pipe extract`` reads the per-movie folder only: the modality
columns of ``shots.parquet`` (every ``fixed_size_list`` column with a ``<m>_count`` partner,
``manifests.features.FeatureFolder.modalities``) and, for act training, ``synopsis.parquet``.

Two sample layouts, one per task:

* **Scene** (BaSSL's protocol, docs/training.md): every shot is a sample; its input is the 17-shot
  window ``shot + [-8 .. 8]`` with indices *clipped* to the movie, so edge shots are repeated
  rather than padded, and the loss is on the centre shot. All movies' shots are concatenated
  into one array and windows are global row indices, so a batch is one fancy-indexing gather.
* **Act** (supp. Sec. 4-5): one movie is one sequence. A movie longer than the model's ``max_len``
  is covered by overlapping windows (50 % overlap); each window is a separate row of the
  batch, and :func:`stitch_windows` averages the logits and embeddings of the windows that
  cover a shot, so the losses and predictions always see the whole movie (docs/training.md; a
  movie is never truncated). Align.PE positions are the movie-global ``i / n_shots`` in every
  window, so bin b means "the b-th 1/L_n of the movie" in every window and the shot↔sentence
  alignment holds across windows.

Feature normalisation: per modality, mean/std over all training shots (the checkpoint stores
them, so inference applies exactly the training transform).

Missing modalities: a shot whose ``<m>`` is null (the movie lacks ``m``) or whose ``<m>_count``
is 0 (no sample overlapped it) has ``m`` *missing*: ``MovieData.present[m]`` is False there,
its normalised features are 0 and the model replaces them by its learned "missing" embedding
(docs/model.md). A missing value is never read as a zero feature.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..manifests.errors import MegaPipeError
from ..manifests.features import FeatureFolder, vectors_of
from ..manifests.schema import MovieEntry

SCENE_HALF_WINDOW = 8  # 17-shot windows: 2·8 + 1, BaSSL / MEGA scene L (Tab. 1b); configs: max_len
SYNOPSIS_KEY = "synopsis"  # the normaliser's entry for synopsis sentence vectors
N_TPS = 5
UNLABELLED = -100  # scene label of a shot without annotation (e.g. MovieNet's last shot)


# --- Reading feature folders -----------------------------------------------------------------


@dataclass
class MovieData:
    """One movie's inputs (and gold labels when it comes from a manifest)."""

    movie_id: str
    features: dict[str, np.ndarray]  # modality -> (n_shots, D_m) float32
    shot_frames: np.ndarray  # (n_shots, 2) int64: start_frame, end_frame (exclusive)
    present: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (n_shots,) bool; absent key = all
    synopsis: np.ndarray | None = None  # (n_sentences, D) float32
    scene_labels: np.ndarray | None = None  # (n_shots,) int64 in {0, 1, UNLABELLED}
    tp_sentences: list[list[int]] | None = None
    tp_shots: list[list[int]] | None = None
    shot_scenes: list[int] | None = None  # per shot, its screenplay-scene index (scene-level TA/PA/D)

    @property
    def n_shots(self) -> int:
        return len(self.shot_frames)

    def presence(self, modality: str) -> np.ndarray:
        """(n_shots,) bool: where ``modality`` has a value (see the module docstring)."""
        return self.present.get(modality, np.ones(self.n_shots, dtype=bool))


def available_modalities(folder: str | os.PathLike) -> list[str]:
    """The modalities a feature folder has, in file order (schema only): its modality columns
    minus those marked absent (docs/contract.md)."""
    return FeatureFolder(folder).require_complete().modalities()


def read_movie(folder: str | os.PathLike, modalities: Sequence[str], *, synopsis: bool = False,
               dims: Mapping[str, int] | None = None) -> MovieData:
    """Load the requested modalities (and the synopsis vectors) of one feature folder.

    A modality the folder lacks is an error, unless ``dims`` (a checkpoint's input dimensions)
    is given: then it is read as missing on every shot (inference without it, docs/model.md)."""
    folder = FeatureFolder(folder).require_complete(synopsis=synopsis)
    have = folder.modalities()
    missing = [m for m in modalities if m not in have]
    if missing and dims is None:
        raise MegaPipeError(
            f"{folder} lacks modality {', '.join(missing)} (it has: {', '.join(have) or 'none'})"
        )
    read = [m for m in modalities if m in have]
    table = folder.read_shots(["start_frame", "end_frame", *read, *(f"{m}_count" for m in read)])
    if table.num_rows == 0:
        raise MegaPipeError(f"{folder.shots_path} has no shots")
    frames = np.stack([table["start_frame"].to_numpy(), table["end_frame"].to_numpy()], axis=1)
    features, present = {}, {}
    for m in modalities:
        if m in have:
            vectors = vectors_of(table[m])
            present[m] = (table[f"{m}_count"].to_numpy() > 0) & np.isfinite(vectors).all(axis=1)
            features[m] = np.where(present[m][:, None], vectors, np.float32(0.0))
        else:
            features[m] = np.zeros((table.num_rows, dims[m]), np.float32)
            present[m] = np.zeros(table.num_rows, dtype=bool)
    sentences = folder.read_synopsis()[1] if synopsis else None
    if sentences is not None and len(sentences) == 0:
        raise MegaPipeError(f"{folder.synopsis_path} has no sentences")
    movie = MovieData(movie_id=folder.movie_id, features=features,
                      shot_frames=frames.astype(np.int64), present=present, synopsis=sentences)
    if dims is not None:
        check_feature_dims([movie], dims, f"{folder}: ")
    return movie


def check_feature_dims(movies: Sequence[MovieData], dims: Mapping[str, int], where: str = "") -> None:
    """Every movie's features have the dimensions ``dims`` (a model's inputs); else one line."""
    for movie in movies:
        for m, want in dims.items():
            have = movie.features[m].shape[1] if m in movie.features else want
            if have != want:
                raise MegaPipeError(f"{where}movie {movie.movie_id}: modality {m} has {have}-d features, "
                                    f"the model expects {want}-d")


def check_sentence_dims(movies: Sequence[MovieData], want: int | None, where: str = "") -> None:
    """Every movie's synopsis sentence vectors are ``want``-d (the synopsis model's input; None:
    the model has none); else one line naming both dimensions."""
    for movie in movies:
        have = None if movie.synopsis is None or want is None else movie.synopsis.shape[1]
        if have is not None and have != want:
            raise MegaPipeError(f"{where}movie {movie.movie_id}: synopsis sentences are {have}-d, "
                                f"the model expects {want}-d")


def load_entries(entries: Sequence[MovieEntry], modalities: Sequence[str], *, synopsis: bool = False,
                 dims: Mapping[str, int] | None = None) -> list[MovieData]:
    """Read every manifest entry and attach its gold labels (checked against the shot count);
    ``dims`` as in :func:`read_movie`."""
    movies = []
    for entry in entries:
        movie = read_movie(entry.features, modalities, synopsis=synopsis, dims=dims)
        movie.movie_id = entry.movie_id
        if entry.scene_labels is not None:
            movie.scene_labels = scene_label_array(entry.scene_labels, movie.n_shots, entry.movie_id)
        movie.tp_sentences = entry.tp_sentences
        movie.tp_shots = entry.tp_shots
        movie.shot_scenes = entry.shot_scenes
        movies.append(movie)
    return movies


def read_synopsis_movie(folder: str | os.PathLike) -> MovieData:
    """The synopsis vectors of a feature folder, full extract output or synopsis-only
    (``manifest tripod --synopses-only``); no shots are read (task "synopsis")."""
    folder = FeatureFolder(folder).require_complete(synopsis=True, shots=False)
    sentences = folder.read_synopsis()[1]
    if len(sentences) == 0:
        raise MegaPipeError(f"{folder.synopsis_path} has no sentences")
    return MovieData(movie_id=folder.movie_id, features={}, shot_frames=np.zeros((0, 2), np.int64),
                     synopsis=sentences)


def load_synopsis_entries(entries: Sequence[MovieEntry]) -> list[MovieData]:
    """Every manifest entry's synopsis vectors with its ``tp_sentences`` (task "synopsis")."""
    movies = []
    for entry in entries:
        movie = read_synopsis_movie(entry.features)
        movie.movie_id = entry.movie_id
        movie.tp_sentences = entry.tp_sentences
        movies.append(movie)
    return movies


def scene_label_array(labels: Sequence[int | None], n_shots: int, movie_id: str) -> np.ndarray:
    """Manifest scene labels -> (n_shots,) int64: −1 counts as 1 (BaSSL's ``abs``);
    ``null`` (e.g. MovieNet's last shot) becomes UNLABELLED: neither trained on nor scored."""
    if len(labels) != n_shots:
        raise MegaPipeError(f"{movie_id}: {len(labels)} scene labels for {n_shots} shots")
    return np.array([UNLABELLED if v is None else abs(int(v)) for v in labels], dtype=np.int64)


def choose_modalities(entries: Sequence[MovieEntry], requested: Sequence[str] | None) -> list[str]:
    """The modalities to train on: ``requested``, or every modality present in every movie.

    Order follows the first movie's shots.parquet, so it is stable across runs.
    """
    per_movie = [available_modalities(e.features) for e in entries]
    if requested:
        known = list(dict.fromkeys(m for present in per_movie for m in present))
        unknown = [m for m in requested if m not in known]
        if unknown:   # in no movie at all: a misspelt name more likely than missing data
            raise MegaPipeError(f"unknown modality {', '.join(unknown)}: the manifest's training movies have "
                                f"{', '.join(known) or 'none'}")
        for entry, present in zip(entries, per_movie):
            missing = [m for m in requested if m not in present]
            if missing:
                raise MegaPipeError(f"movie {entry.movie_id} lacks modality {', '.join(missing)}")
        return list(requested)
    common = [m for m in per_movie[0] if all(m in p for p in per_movie[1:])]
    if not common:
        raise MegaPipeError("no modality is present in every training movie")
    return common


# --- Normalisation ---------------------------------------------------------------------------


@dataclass
class Normalizer:
    """Per-modality feature standardisation fitted on the training shots.

    Extracted features live on very different scales (CLIP unit vectors vs. ReLU CNN features);
    standardising them lets one learning rate suit all modalities. A constant channel (std 0)
    is only centred. Statistics use the shots where the modality is present; missing shots
    stay 0 after :meth:`apply`.
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, movies: Sequence[MovieData], modalities: Sequence[str], *, synopsis: bool = False) -> "Normalizer":
        keys = [*modalities, *([SYNOPSIS_KEY] if synopsis else [])]
        mean, std = {}, {}
        for key in keys:
            rows = np.concatenate([_array(movie, key) for movie in movies]).astype(np.float64)
            if not len(rows):   # never present in training: identity transform
                rows = np.zeros((1, _array(movies[0], key, present_only=False).shape[1]))
            mean[key] = rows.mean(axis=0).astype(np.float32)
            sd = rows.std(axis=0)
            std[key] = np.where(sd > 1e-8, sd, 1.0).astype(np.float32)
        return cls(mean, std)

    def check(self, movies: Sequence[MovieData], where: str = "") -> None:
        """The movies' features (and synopses) have the dimensions of these statistics, the
        model's inputs; else one line naming both (``where`` before it)."""
        check_feature_dims(movies, {m: len(v) for m, v in self.mean.items() if m != SYNOPSIS_KEY}, where)
        check_sentence_dims(movies, len(self.mean[SYNOPSIS_KEY]) if SYNOPSIS_KEY in self.mean else None, where)

    def apply(self, movie: MovieData) -> MovieData:
        """Normalise a movie's features (and synopsis) in place and return it (:meth:`check`
        first: another dimension is one line, not a broadcasting error)."""
        self.check([movie])
        for m in movie.features:
            movie.features[m] = (movie.features[m] - self.mean[m]) / self.std[m]
            movie.features[m][~movie.presence(m)] = 0.0
        if movie.synopsis is not None and SYNOPSIS_KEY in self.mean:
            movie.synopsis = (movie.synopsis - self.mean[SYNOPSIS_KEY]) / self.std[SYNOPSIS_KEY]
        return movie

    def state(self) -> dict:
        """Plain lists (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {k: {"mean": self.mean[k].tolist(), "std": self.std[k].tolist()} for k in self.mean}

    @classmethod
    def from_state(cls, state: dict) -> "Normalizer":
        return cls(
            {k: np.asarray(v["mean"], np.float32) for k, v in state.items()},
            {k: np.asarray(v["std"], np.float32) for k, v in state.items()},
        )


def _array(movie: MovieData, key: str, present_only: bool = True) -> np.ndarray:
    if key == SYNOPSIS_KEY:
        return movie.synopsis
    return movie.features[key][movie.presence(key)] if present_only else movie.features[key]


def drop_modalities(present: Mapping[str, Tensor], p: float) -> dict[str, Tensor]:
    """Modality dropout (config ``train.modality_dropout``, docs/training.md): every row of a
    batch (a scene window, an act window) loses each modality with probability ``p``, for the
    whole row; a row never loses all of them. Draws from torch's global RNG, so the trainer's
    seed and ``--resume`` make it reproducible. ``p`` = 0 (evaluation) returns ``present``."""
    if p <= 0:
        return dict(present)
    names = list(present)
    rows = present[names[0]].shape[0]
    drop = torch.rand(rows, len(names), device=present[names[0]].device) < p
    drop &= ~drop.all(dim=1, keepdim=True)
    return {m: present[m] & ~drop[:, k, None] for k, m in enumerate(names)}


# --- Scene samples (BaSSL's protocol) ---------------------------------------------------------


def scene_windows(n_shots: int, half: int = SCENE_HALF_WINDOW) -> np.ndarray:
    """(n_shots, 2·half + 1) shot indices: shot + [-half .. half], clipped to the movie."""
    return np.clip(np.arange(n_shots)[:, None] + np.arange(-half, half + 1)[None, :], 0, n_shots - 1)


@dataclass
class SceneBatch:
    feats: dict[str, Tensor]  # (B, 17, D_m)
    present: dict[str, Tensor]  # (B, 17) bool per modality: the shot has a value
    mask: Tensor  # (B, 17) bool, all True (windows are clipped, never padded)
    labels: Tensor | None  # (B,) centre-shot labels


class SceneSamples:
    """All windows of a set of movies, gathered from one concatenated feature array."""

    def __init__(self, movies: Sequence[MovieData], modalities: Sequence[str],
                 window: int = 2 * SCENE_HALF_WINDOW + 1) -> None:
        """``window``: the scene config's ``max_len`` (L of Tab. 1b); each window is a shot and
        ⌊(window − 1)/2⌋ shots on each side."""
        half = (window - 1) // 2
        self.modalities = list(modalities)
        self.feats = {m: np.concatenate([mv.features[m] for mv in movies]).astype(np.float32) for m in modalities}
        self.present = {m: np.concatenate([mv.presence(m) for mv in movies]) for m in modalities}
        offsets = np.cumsum([0] + [mv.n_shots for mv in movies])
        self.windows = np.concatenate([scene_windows(mv.n_shots, half) + off
                                       for mv, off in zip(movies, offsets)])
        self.labels = None
        if all(mv.scene_labels is not None for mv in movies):
            self.labels = np.concatenate([mv.scene_labels for mv in movies])

    def __len__(self) -> int:
        return len(self.windows)

    def batch(self, index: np.ndarray, device: torch.device) -> SceneBatch:
        rows = self.windows[index]
        feats = {m: torch.from_numpy(self.feats[m][rows]).to(device) for m in self.modalities}
        present = {m: torch.from_numpy(self.present[m][rows]).to(device) for m in self.modalities}
        mask = torch.ones(rows.shape, dtype=torch.bool, device=device)
        labels = None if self.labels is None else torch.from_numpy(self.labels[index]).to(device)
        return SceneBatch(feats, present, mask, labels)


# --- Act samples (whole movies; long ones in overlapping windows) ----------------------------


def act_windows(n_shots: int, max_len: int) -> list[tuple[int, int]]:
    """[start, end) windows covering the movie: one if it fits, else max_len-long with 50 % overlap.

    The last window is aligned to the movie end, so every shot is covered at least once and
    (for n_shots > max_len) every shot away from the edges by two windows.
    """
    if n_shots <= max_len:
        return [(0, n_shots)]
    stride = max(1, max_len // 2)
    starts = list(range(0, n_shots - max_len, stride)) + [n_shots - max_len]
    return [(s, s + max_len) for s in starts]


@dataclass
class WindowBatch:
    """Padded windows of several movies, plus how to put them back together."""

    feats: dict[str, Tensor]  # (W, L, D_m)
    present: dict[str, Tensor]  # (W, L) bool per modality: the shot has a value
    mask: Tensor  # (W, L) bool
    positions: Tensor  # (W, L) movie-global r_i = i / n_shots
    spans: list[tuple[int, int, int]]  # per window: (movie index in the batch, start, end)
    n_shots: list[int]


def pack_windows(movies: Sequence[MovieData], modalities: Sequence[str], max_len: int, device: torch.device) -> WindowBatch:
    """Cut every movie into act windows and pad them into one batch."""
    spans = [(i, s, e) for i, mv in enumerate(movies) for s, e in act_windows(mv.n_shots, max_len)]
    length = max(e - s for _, s, e in spans)
    mask = np.zeros((len(spans), length), dtype=bool)
    positions = np.zeros((len(spans), length), dtype=np.float32)
    feats = {m: np.zeros((len(spans), length, movies[0].features[m].shape[1]), np.float32) for m in modalities}
    present = {m: np.zeros((len(spans), length), dtype=bool) for m in modalities}
    for row, (i, s, e) in enumerate(spans):
        mask[row, : e - s] = True
        positions[row, : e - s] = np.arange(s, e) / movies[i].n_shots
        for m in modalities:
            feats[m][row, : e - s] = movies[i].features[m][s:e]
            present[m][row, : e - s] = movies[i].presence(m)[s:e]
    return WindowBatch(
        feats={m: torch.from_numpy(v).to(device) for m, v in feats.items()},
        present={m: torch.from_numpy(v).to(device) for m, v in present.items()},
        mask=torch.from_numpy(mask).to(device),
        positions=torch.from_numpy(positions).to(device),
        spans=spans,
        n_shots=[mv.n_shots for mv in movies],
    )


def stitch_windows(values: Tensor, batch: WindowBatch) -> list[Tensor]:
    """Per-window outputs (W, L, K) -> per-movie (n_shots, K), averaging overlapping windows."""
    sums = [values.new_zeros(n, values.shape[-1]) for n in batch.n_shots]
    counts = [values.new_zeros(n, 1) for n in batch.n_shots]
    for row, (i, s, e) in enumerate(batch.spans):
        sums[i] = sums[i].index_add(0, torch.arange(s, e, device=values.device), values[row, : e - s])
        counts[i][s:e] += 1
    return [total / count for total, count in zip(sums, counts)]


def pack_synopses(movies: Sequence[MovieData], device: torch.device) -> tuple[Tensor, Tensor]:
    """Synopsis vectors of several movies padded to (B, S, D) with a (B, S) bool mask."""
    length = max(len(mv.synopsis) for mv in movies)
    dim = movies[0].synopsis.shape[1]
    sents = np.zeros((len(movies), length, dim), np.float32)
    mask = np.zeros((len(movies), length), dtype=bool)
    for i, mv in enumerate(movies):
        sents[i, : len(mv.synopsis)] = mv.synopsis
        mask[i, : len(mv.synopsis)] = True
    return torch.from_numpy(sents).to(device), torch.from_numpy(mask).to(device)


def tp_targets(groups: Sequence[Sequence[int]], n_units: int, movie_id: str, unit: str) -> np.ndarray:
    """Gold TP index sets -> (n_units, 5) target distributions (each TP column sums to 1).

    A TP annotated on several sentences (or shots) spreads its mass evenly over them.
    """
    if len(groups) != N_TPS:
        raise MegaPipeError(f"{movie_id}: expected {N_TPS} turning points, got {len(groups)}")
    target = np.zeros((n_units, N_TPS), np.float32)
    for n, group in enumerate(groups):
        bad = [g for g in group if not 0 <= g < n_units]
        if not group or bad:
            raise MegaPipeError(f"{movie_id}: TP {n + 1} {unit} indices {list(group)} outside 0..{n_units - 1}")
        target[list(group), n] = 1.0 / len(group)
    return target
