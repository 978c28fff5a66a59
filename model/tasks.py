"""The two MEGA tasks as objects: what the training loop and evaluation ask of a task.

A :class:`Task` owns its label checks, its samples and batches, its step loss, its prediction
records and metrics, and its model-selection value; ``train.py`` (the loop) and ``evaluate.py``
pick the task once (:func:`task_for`) and never branch on its name.

Scene segmentation (BaSSL's protocol, docs/training.md; :class:`SceneTask`): every labelled shot
is a sample, its 17-shot clipped window is the input and the class-balanced cross-entropy
(BaSSL's) is taken on the centre shot. Selected by validation AP.

Act segmentation (supp. Sec. 4-5, :class:`ActTask`): a batch is a few whole movies. Per movie:

1. the shot model gives TP logits Y and shot embeddings u_i (long movies: overlapping windows,
   averaged, ``data.py``); the synopsis model gives sentence TP logits and embeddings v_j;
2. **E-step**: W from the current, detached cosine similarities of u and v inside the diagonal
   band |i/L_sh − j/L_syn| < ξ, thresholded at a per-movie quantile (Eq. 2, 4);
3. **M-step**: multi-positive InfoNCE on W (``sync``);
4. **distillation** of the gold one-hot synopsis TP labels q through the shot↔sentence
   attention into the shot logits (``distill``, Eq. 5–8);
5. the synopsis model's own TP cross-entropy on the gold sentence labels (``synopsis``);
6. when the manifest has shot-level gold (``tp_shots``) for the movie, also a direct per-TP
   cross-entropy of the shot logits (``shot_tp``).

The loss weights and the sync/distill settings are the config's ``train`` (``ActTrainConfig``).
Selected by validation TA (shot-level gold, docs/training.md "Evaluation gold"); when no
validation movie has it, by the validation loss.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..manifests.errors import MegaPipeError
from ..manifests.schema import MovieEntry
from .baselines import PRIOR_BASELINE, choose_position_prior, prior_records
from .checkpoint import read_checkpoint, stored_config
from .config import (
    SYNOPSIS_ARCHITECTURE,
    ActTrainConfig,
    MegaConfig,
    synopsis_model_config,
)
from .data import (
    SYNOPSIS_KEY,
    UNLABELLED,
    MovieData,
    Normalizer,
    SceneSamples,
    drop_modalities,
    load_entries,
    load_synopsis_entries,
    pack_synopses,
    pack_windows,
    stitch_windows,
    tp_targets,
)
from .device import autocast
from .losses import (
    balanced_cross_entropy,
    distillation_loss,
    sync_estep,
    sync_mstep_loss,
    tp_cross_entropy,
)
from .mega import MEGA, SynopsisModel
from .metrics import act_metrics, scene_metrics, synopsis_metrics, synopsis_prediction
from .predict import act_posteriors, scene_probabilities, sync_embeddings

ACT_LOSSES = ("sync", "distill", "synopsis", "shot_tp")

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What one training run works with (built fresh or restored from last.pt)."""

    cfg: MegaConfig
    settings: dict  # epochs, batch_size, lr, seed, modalities, val_split
    modality_dims: dict[str, int]
    sentence_dim: int | None
    normalizer: Normalizer
    train_movies: list[MovieData]
    val_movies: list[MovieData]
    model: MEGA
    synopsis_model: SynopsisModel | None
    device: torch.device

    def parameters(self) -> list[torch.nn.Parameter]:
        params = list(self.model.parameters())
        if self.synopsis_model is not None:
            params += list(self.synopsis_model.parameters())
        return params

    def set_train(self, mode: bool) -> None:
        self.model.train(mode)
        if self.synopsis_model is not None:
            self.synopsis_model.train(mode)

    def modality_dropout(self) -> float:
        """``train.modality_dropout`` while training; 0 in evaluation mode (validation)."""
        return self.cfg.train.modality_dropout if self.model.training else 0.0


class Task:
    """The interface of a task; one instance per training run or evaluation."""

    name: str
    uses_synopsis: bool = False  # its movies need synopsis vectors (and a synopsis model)
    uses_shots: bool = True  # its movies need shots.parquet (and modalities)

    def load(self, entries: Sequence[MovieEntry], modalities: Sequence[str],
             dims: dict[str, int] | None = None) -> list[MovieData]:
        """The movies of manifest entries with their gold labels (``data.load_entries``)."""
        return load_entries(entries, modalities, synopsis=self.uses_synopsis, dims=dims)

    def check_training_labels(self, cfg: MegaConfig, movies: Sequence[MovieData]) -> None:
        """Fail before training starts when a movie lacks what the task trains on."""
        raise NotImplementedError

    def check_gold(self, movies: Sequence[MovieData]) -> None:
        """Fail before scoring when a movie lacks the gold the task is scored on."""
        raise NotImplementedError

    def set_teacher(self, path: str | os.PathLike | None, resume: bool, settings: dict) -> None:
        """``--synopsis-checkpoint`` (read before any data): only an act run has a synopsis
        network for it to initialise."""
        if path is not None:
            raise MegaPipeError("--synopsis-checkpoint is for task act (it initialises the act model's "
                                "synopsis network)")

    def prepare(self, run: Run) -> None:
        """Build whatever the epochs sample from (called once per run)."""

    def start(self, run: Run, resumed: bool) -> None:
        """Set the models up before the first epoch, once they are built and (``resumed``)
        restored from last.pt."""

    def training_pool(self, run: Run) -> np.ndarray:
        """Indices of the training samples one epoch shuffles and batches."""
        raise NotImplementedError

    def step_loss(self, run: Run, index: np.ndarray, epoch: float | None) -> dict[str, torch.Tensor]:
        """Losses of one batch (``"loss"`` is what is minimised); ``epoch`` is fractional."""
        raise NotImplementedError

    def records(self, model: MEGA, cfg: MegaConfig, movies: Sequence[MovieData], device: torch.device,
                synopsis_model: SynopsisModel | None = None) -> list[dict]:
        """Prediction records (one per movie), the format ``mega-pipe score`` reads; an act
        model's ``synopsis_model`` guides the prediction when its config says so."""
        raise NotImplementedError

    def metrics(self, records: list[dict]) -> dict:
        raise NotImplementedError

    def baseline_metrics(self, records: list[dict]) -> dict[str, dict]:
        """The parameter-free baselines' metrics on the same movies and gold as ``records``,
        by name; empty by default."""
        return {}

    def scored(self, records: list[dict]) -> dict:
        """The model's metrics with the baselines' beside them, as validation, ``eval`` and
        ``score`` report them."""
        return {**self.metrics(records), **self.baseline_metrics(records)}

    def validate(self, run: Run) -> dict:
        """``{"metrics": ..., "select": (metric name, value)}``; higher value is better."""
        raise NotImplementedError


def warn_unless_above_prior(metrics: dict, what: str) -> None:
    """A warning when ``metrics`` (a TP task's, with :meth:`Task.baseline_metrics` merged in)
    has a TA not above TRIPOD's position prior on the same movies: such a model has learned
    nothing the published positions do not already say."""
    prior = metrics.get(PRIOR_BASELINE)
    if prior is not None and metrics["ta"] <= prior["ta"]:
        log.warning("%s: TA %.3f is not above TRIPOD's position prior's %.3f on the same movies "
                    "(parameter-free; docs/training.md, \"Where the models stand\")", what, metrics["ta"], prior["ta"])


class TurningPointTask(Task):
    """A task whose records are per-TP distributions (over shots or sentences): TRIPOD's
    published position prior on the same units is the baseline every result sits beside."""

    def baseline_metrics(self, records: list[dict]) -> dict[str, dict]:
        prior = self.metrics(prior_records(records))
        return {PRIOR_BASELINE: {k: prior[k] for k in ("ta", "pa", "d")}}


class SceneTask(Task):
    name = "scene"

    def __init__(self) -> None:
        self.samples: SceneSamples | None = None

    def check_training_labels(self, cfg: MegaConfig, movies: Sequence[MovieData]) -> None:
        for movie in movies:
            if movie.scene_labels is None:
                raise MegaPipeError(f"scene training needs scene_labels; movie {movie.movie_id} has none")

    def check_gold(self, movies: Sequence[MovieData]) -> None:
        missing = [m.movie_id for m in movies if m.scene_labels is None]
        if missing:
            raise MegaPipeError(f"cannot score scene boundaries: no scene_labels for {', '.join(missing)}")

    def prepare(self, run: Run) -> None:
        self.samples = SceneSamples(run.train_movies, run.settings["modalities"], run.cfg.max_len)

    def training_pool(self, run: Run) -> np.ndarray:
        return np.flatnonzero(self.samples.labels != UNLABELLED)

    def step_loss(self, run: Run, index: np.ndarray, epoch: float | None) -> dict[str, torch.Tensor]:
        batch = self.samples.batch(index, run.device)
        centre = self.samples.windows.shape[1] // 2
        present = drop_modalities(batch.present, run.modality_dropout())
        with autocast(run.device):
            logits = run.model(batch.feats, batch.mask, present=present).logits[:, centre]
        return {"loss": balanced_cross_entropy(logits.float(), batch.labels)}

    def records(self, model: MEGA, cfg: MegaConfig, movies: Sequence[MovieData], device: torch.device,
                synopsis_model: SynopsisModel | None = None) -> list[dict]:
        samples = SceneSamples(movies, list(model.modalities), cfg.max_len)
        probs = scene_probabilities(model, samples, device)
        records, offset = [], 0
        for movie in movies:
            labels = None if movie.scene_labels is None else [
                None if y == UNLABELLED else int(y) for y in movie.scene_labels
            ]
            records.append({
                "movie_id": movie.movie_id,
                "prob": probs[offset : offset + movie.n_shots].tolist(),
                "label": labels,
                "shot_frames": movie.shot_frames.tolist(),
            })
            offset += movie.n_shots
        return records

    def metrics(self, records: list[dict]) -> dict:
        return scene_metrics(records)

    @torch.no_grad()
    def validate(self, run: Run) -> dict:
        run.set_train(False)
        metrics = self.metrics(self.records(run.model, run.cfg, run.val_movies, run.device))
        return {"metrics": metrics, "select": ("ap", metrics["ap"])}


class ActTask(TurningPointTask):
    name = "act"
    uses_synopsis = True

    def __init__(self) -> None:
        self.teacher: tuple[dict, str | os.PathLike] | None = None   # (state, path) of --synopsis-checkpoint

    def set_teacher(self, path: str | os.PathLike | None, resume: bool, settings: dict) -> None:
        """Read the synopsis checkpoint (of a ``train --task synopsis`` run) whose weights
        initialise a new run's synopsis network, the teacher of the distillation (Eq. 5–8)."""
        if path is None:
            return
        if resume:
            raise MegaPipeError("--synopsis-checkpoint starts a run; a resumed run has its weights in last.pt")
        teacher = read_checkpoint(path)
        if teacher["task"] != "synopsis":
            raise MegaPipeError(f"{path} is a {teacher['task']!r} checkpoint, not a synopsis one")
        settings["synopsis_checkpoint"] = str(path)
        self.teacher = (teacher, path)

    def start(self, run: Run, resumed: bool) -> None:
        """The synopsis teacher's weights (:meth:`set_teacher`); a warning where the paper's
        fused synchronisation is asked to do what it did not do on any planted set."""
        if self.teacher is not None:
            load_synopsis_teacher(run, *self.teacher)
        if run.cfg.train.sync.space == "fused" and all(m.tp_shots is None for m in run.train_movies):
            log.warning("no training movie has shot-level TP gold (the TRIPOD setting): with the paper's "
                        "fused synchronisation the synopsis labels did not reach the shots on any of our "
                        "planted sets (docs/training.md, \"The paper's model in this setting\"); the "
                        "act-sync variant (--config act-sync, then segment --synopsis) does")

    def check_training_labels(self, cfg: MegaConfig, movies: Sequence[MovieData]) -> None:
        for movie in movies:
            if movie.tp_sentences is None:
                raise MegaPipeError(f"act training needs tp_sentences; movie {movie.movie_id} has none")
            if len(movie.synopsis) > cfg.synopsis.max_len:
                raise MegaPipeError(
                    f"{movie.movie_id}: synopsis of {len(movie.synopsis)} sentences exceeds the synopsis "
                    f"model's max_len {cfg.synopsis.max_len} (raise it with a config override)"
                )

    def check_gold(self, movies: Sequence[MovieData]) -> None:
        missing = [m.movie_id for m in movies if m.tp_shots is None]
        if missing:
            raise MegaPipeError(f"cannot score turning points: no tp_shots for {', '.join(missing)}")

    def training_pool(self, run: Run) -> np.ndarray:
        return np.arange(len(run.train_movies))

    def step_loss(self, run: Run, index: np.ndarray, epoch: float | None) -> dict[str, torch.Tensor]:
        return self.movie_losses(run, [run.train_movies[i] for i in index], epoch)

    def movie_losses(self, run: Run, movies: Sequence[MovieData], epoch: float | None) -> dict[str, torch.Tensor]:
        """The act losses (module docstring) for a batch of whole movies, averaged over the
        movies. A movie with shot-level gold (``tp_shots``) is taught by ``shot_tp`` and not
        distilled: the distillation exists to carry synopsis labels to shots that have none
        (docs/training.md "Shot-level gold")."""
        train: ActTrainConfig = run.cfg.train
        shot_logits, head_logits, shot_emb, sent_logits, sent_emb = self._forward(run, movies)
        prior = sync_prior(train, epoch)
        kd = train.distill
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ACT_LOSSES}
        for i, movie in enumerate(movies):
            n_sent = len(movie.synopsis)
            u, v = shot_emb[i], sent_emb[i, :n_sent].float()
            q = torch.from_numpy(tp_targets(movie.tp_sentences, n_sent, movie.movie_id, "sentence")).to(run.device)
            sim = F.normalize(u.detach(), dim=-1) @ F.normalize(v.detach(), dim=-1).T
            w = sync_estep(sim, movie.n_shots, n_sent, xi=train.sync.xi, quantile=train.sync.quantile, prior=prior)
            parts["sync"].append(sync_mstep_loss(u, v, w, tau=train.sync.tau))
            if movie.tp_shots is None:
                parts["distill"].append(distillation_loss(head_logits[i], u, v, q, tau=kd.tau, direction=kd.direction,
                                                          cosine=kd.cosine, teacher_tau=kd.teacher_tau))
            parts["synopsis"].append(tp_cross_entropy(sent_logits[i, :n_sent].float(), q))
            if movie.tp_shots is not None:
                target = tp_targets(movie.tp_shots, movie.n_shots, movie.movie_id, "shot")
                parts["shot_tp"].append(tp_cross_entropy(shot_logits[i], torch.from_numpy(target).to(run.device)))
        losses = {k: torch.stack(v).mean() for k, v in parts.items() if v}
        weights = dataclasses.asdict(train.loss_weights)
        losses["loss"] = sum(weights[k] * v for k, v in losses.items())
        return losses

    @staticmethod
    def _forward(run: Run, movies: Sequence[MovieData]) -> tuple:
        """Per movie: shot logits (with the position head), the MEGA head's logits alone (what
        the distillation trains; the same tensor without a position head), the shot and
        sentence embeddings of the sync space (``train.sync.space``: the fused u, v as the
        paper, or the content projections) and the synopsis model's sentence logits."""
        batch = pack_windows(movies, list(run.modality_dims), run.cfg.max_len, run.device)
        sents, sent_mask = pack_synopses(movies, run.device)
        present = drop_modalities(batch.present, run.modality_dropout())
        with autocast(run.device):
            out = run.model(batch.feats, batch.mask, batch.positions, present)
            sent_logits, sent_emb = run.synopsis_model(sents, sent_mask)
        shot_logits = stitch_windows(out.logits.float(), batch)
        head_logits = shot_logits if out.head_logits is None else stitch_windows(out.head_logits.float(), batch)
        shot_emb, sent_emb = sync_embeddings(run.model, run.synopsis_model, batch, present, out, sents, sent_emb)
        return shot_logits, head_logits, shot_emb, sent_logits, sent_emb

    def records(self, model: MEGA, cfg: MegaConfig, movies: Sequence[MovieData], device: torch.device,
                synopsis_model: SynopsisModel | None = None) -> list[dict]:
        posteriors = act_posteriors(model, movies, list(model.modalities), device, synopsis_model)
        records = []
        for m, p in zip(movies, posteriors):
            record = {"movie_id": m.movie_id, "posteriors": p.tolist(), "gold": m.tp_shots}
            if m.shot_scenes is not None:   # scene-level TA/PA/D too (metrics.act_metrics)
                record["shot_scenes"] = list(m.shot_scenes)
            records.append(record)
        return records

    def metrics(self, records: list[dict]) -> dict:
        return act_metrics(records)

    @torch.no_grad()
    def validate(self, run: Run) -> dict:
        run.set_train(False)
        movies = run.val_movies
        with_gold = [m for m in movies if m.tp_shots is not None]
        metrics = (self.scored(self.records(run.model, run.cfg, with_gold, run.device, run.synopsis_model))
                   if with_gold else {})
        losses = [self.movie_losses(run, [m], None) for m in movies]
        metrics["loss"] = float(np.mean([float(l["loss"]) for l in losses]))
        if with_gold:
            return {"metrics": metrics, "select": ("ta", metrics["ta"])}
        return {"metrics": metrics, "select": ("-loss", -metrics["loss"])}


def load_synopsis_teacher(run: Run, teacher: dict, origin: str | os.PathLike) -> None:
    """Initialise an act run's synopsis network from a synopsis checkpoint's state.

    The act config's synopsis network (``config.synopsis_model_config``: its synopsis section
    at width C·M) must have the teacher's architecture and sentence size; otherwise one line
    lists what differs. The teacher's synopsis normalisation replaces the one fitted on the act
    movies, so the network sees its inputs on the scale it was trained on (the checkpoint of
    the act run stores it)."""
    mine = synopsis_model_config(run.cfg, len(run.modality_dims))
    theirs = stored_config(teacher, origin)
    diffs = [f"{k} {getattr(theirs, k)!r} vs {getattr(mine, k)!r}" for k in SYNOPSIS_ARCHITECTURE
             if getattr(theirs, k) != getattr(mine, k)]
    if teacher["sentence_dim"] != run.sentence_dim:
        diffs.append(f"sentence_dim {teacher['sentence_dim']} vs {run.sentence_dim}")
    if diffs:
        raise MegaPipeError(f"{origin}: its synopsis network does not fit this act config's "
                            f"(teacher vs act, width = act width x {len(run.modality_dims)} modalities): "
                            + "; ".join(diffs))
    run.synopsis_model.load_state_dict(teacher["model"])
    stats = Normalizer.from_state(teacher["normalization"])
    for movie in (*run.train_movies, *run.val_movies):   # undo the act fit, apply the teacher's
        movie.synopsis = movie.synopsis * run.normalizer.std[SYNOPSIS_KEY] + run.normalizer.mean[SYNOPSIS_KEY]
        movie.synopsis = (movie.synopsis - stats.mean[SYNOPSIS_KEY]) / stats.std[SYNOPSIS_KEY]
    run.normalizer.mean[SYNOPSIS_KEY] = stats.mean[SYNOPSIS_KEY]
    run.normalizer.std[SYNOPSIS_KEY] = stats.std[SYNOPSIS_KEY]
    log.info("synopsis network initialised from %s", origin)


def sync_prior(train: ActTrainConfig, epoch: float | None) -> float:
    """The E-step's diagonal prior at a (fractional) epoch: ``sync.prior``, annealed linearly
    to ``sync.prior_final`` over ``sync.prior_epochs`` when that is > 0 (validation, without
    an epoch, uses the final value)."""
    sync = train.sync
    prior, ramp = sync.prior, sync.prior_epochs
    if ramp > 0:
        progress = 1.0 if epoch is None else min(1.0, epoch / ramp)
        prior += (sync.prior_final - prior) * progress
    return prior


class SynopsisTask(TurningPointTask):
    """Sentence-level turning points of a synopsis (TRIPOD, docs/training.md "Synopsis task").

    The model is the synopsis network alone (``SynopsisModel`` of a task-"synopsis" config, the
    act model's teacher): per synopsis and TP, a softmax over its sentences. The loss is the
    per-TP cross-entropy (``tp_cross_entropy``) against the gold sentences (several annotators:
    mass spread evenly), smoothed by ``train.label_smoothing`` ε: a fraction ε of each gold
    sentence's mass goes to its two neighbours (ε/2 each; at an edge all of it to the one
    neighbour), because a prediction one sentence off is nearly right (TRIPOD's D) while the
    one-hot target calls it as wrong as any other. Records are act records over sentences plus
    the decoded ``prediction`` (``decode_distance_weight``: argmax or the minimum-Bayes-risk
    sentence, ``metrics.synopsis_prediction``), scored by ``metrics.synopsis_metrics`` (TA/PA/D
    of TRIPOD, no ±1 window). The best epoch
    is the one with the lowest validation loss (TA on a few dozen validation synopses moves in
    steps of several per cent).
    """

    name = "synopsis"
    uses_synopsis = True
    uses_shots = False

    def load(self, entries: Sequence[MovieEntry], modalities: Sequence[str],
             dims: dict[str, int] | None = None) -> list[MovieData]:
        return load_synopsis_entries(entries)

    def prepare(self, run: Run) -> None:
        """With a position head: start it at the log of the position prior chosen on the
        training synopses alone (``baselines.choose_position_prior``: the theory prior or the
        position-distribution baseline at one of a few bandwidths, by held-out log-likelihood in
        an inner cross-validation), and start the content head at zero, so that the untrained
        model *is* that prior and training adds what the sentences say (docs/training.md)."""
        bias = run.model.position_bias
        if bias is None:
            return
        prior, name = choose_position_prior([(len(m.synopsis), m.tp_sentences) for m in run.train_movies])
        log.info("synopsis position head starts at the %s prior", name)
        with torch.no_grad():
            bias.copy_(torch.from_numpy(np.log(prior.posteriors(len(bias)).T + 1e-4)).to(bias))
            run.model.head.weight.zero_()
            run.model.head.bias.zero_()

    def check_training_labels(self, cfg: MegaConfig, movies: Sequence[MovieData]) -> None:
        self.check_gold(movies)
        for movie in movies:
            if len(movie.synopsis) > cfg.max_len:
                raise MegaPipeError(f"{movie.movie_id}: synopsis of {len(movie.synopsis)} sentences exceeds "
                                    f"the synopsis model's max_len {cfg.max_len} (raise it with a config override)")

    def check_gold(self, movies: Sequence[MovieData]) -> None:
        missing = [m.movie_id for m in movies if m.tp_sentences is None]
        if missing:
            raise MegaPipeError(f"synopsis turning points need tp_sentences; none for {', '.join(missing)}")

    def training_pool(self, run: Run) -> np.ndarray:
        return np.arange(len(run.train_movies))

    def step_loss(self, run: Run, index: np.ndarray, epoch: float | None) -> dict[str, torch.Tensor]:
        return self.losses(run.model, run.cfg, [run.train_movies[i] for i in index], run.device)

    @staticmethod
    def losses(model: SynopsisModel, cfg: MegaConfig, movies: Sequence[MovieData],
               device: torch.device) -> dict[str, torch.Tensor]:
        sents, mask = pack_synopses(movies, device)
        with autocast(device):
            logits = model(sents, mask)[0]
        parts = []
        for i, movie in enumerate(movies):
            n = len(movie.synopsis)
            q = smoothed_targets(tp_targets(movie.tp_sentences, n, movie.movie_id, "sentence"),
                                 cfg.train.label_smoothing)
            parts.append(tp_cross_entropy(logits[i, :n].float(), torch.from_numpy(q).to(device)))
        return {"loss": torch.stack(parts).mean()}

    @torch.no_grad()
    def records(self, model: SynopsisModel, cfg: MegaConfig, movies: Sequence[MovieData],
                device: torch.device, synopsis_model: SynopsisModel | None = None) -> list[dict]:
        model.eval()
        records = []
        for movie in movies:
            sents, mask = pack_synopses([movie], device)
            logits = model(sents, mask)[0][0].float()
            posteriors = torch.softmax(logits, dim=0).T.cpu().numpy()
            records.append({"movie_id": movie.movie_id,
                            "posteriors": posteriors.tolist(),
                            "prediction": [synopsis_prediction(p, cfg.decode_distance_weight) for p in posteriors],
                            "gold": movie.tp_sentences})
        return records

    def metrics(self, records: list[dict]) -> dict:
        return synopsis_metrics(records)

    @torch.no_grad()
    def validate(self, run: Run) -> dict:
        run.set_train(False)
        metrics = self.scored(self.records(run.model, run.cfg, run.val_movies, run.device))
        metrics["loss"] = float(self.losses(run.model, run.cfg, run.val_movies, run.device)["loss"])
        return {"metrics": metrics, "select": ("-loss", -metrics["loss"])}


def smoothed_targets(target: np.ndarray, epsilon: float) -> np.ndarray:
    """(n, 5) target distributions with a fraction ``epsilon`` of every unit's mass moved to
    its neighbours (half to each; at an edge all to the one neighbour). Columns still sum to 1."""
    if epsilon <= 0 or len(target) < 2:
        return target
    left = np.zeros_like(target)
    right = np.zeros_like(target)
    left[:-1] = target[1:]     # mass arriving from the next unit
    right[1:] = target[:-1]    # mass arriving from the previous unit
    share = np.full((len(target), 1), 0.5, np.float32)
    edge_in = np.zeros_like(target)
    edge_in[1] += target[0] * 0.5     # unit 0 has one neighbour: its other half goes there too
    edge_in[-2] += target[-1] * 0.5
    spread = (left + right) * share + edge_in
    return ((1 - epsilon) * target + epsilon * spread).astype(np.float32)


TASKS: dict[str, type[Task]] = {"scene": SceneTask, "act": ActTask, "synopsis": SynopsisTask}


def task_for(name: str) -> Task:
    """A fresh task object for ``name`` ("scene" | "act" | "synopsis")."""
    if name not in TASKS:
        raise MegaPipeError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]()
