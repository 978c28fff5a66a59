"""MEGA hyper-parameters as data, with the dataclasses below as their schema.

The architecture numbers of MEGA's Tab. 1b (docs/model.md) and the training settings live in
``model/configs/<name>.json``; this module loads them into a frozen :class:`MegaConfig` (whose
``train`` is a :class:`SceneTrainConfig` or :class:`ActTrainConfig`), so a sweep or an ablation
is a different JSON file (or an override), never a code change.

Every key is checked once, at load, before any data is read: an unknown key (at any level), a
value of the wrong type, a missing required key or a value out of range is one
:class:`MegaPipeError` line naming the file and the key path, e.g.
``model/configs/act-small.json: train.sync.spce: unknown key (known: space, xi, ...)``.
The model code can then trust its config.

Every default is the paper's model (supp. Sec. 1, 4-5, Tab. 1): a key left out never adds
anything to it. Where the paper is silent (λ, τ, the form of the M-step, the optimiser) the
defaults are our reconstructions, each listed once in docs/model.md with its source. The named
variants (``scene-relational``, ``act-sync``: docs/model.md "Variants") spell their additions
out in their JSON files.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from ..manifests.errors import MegaPipeError
from ..manifests.jsonio import parse_json, read_text

TASKS = ("scene", "act", "synopsis")


# --- The schema --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncConfig:
    """Act synchronisation, E-step and M-step (``losses.sync_estep`` / ``sync_mstep_loss``)."""

    space: Literal["content", "fused"] = "fused"  # what is synchronised: the paper's fused u, v, or (variant) the content projections
    xi: float = 0.3  # diagonal band |i/L_sh - j/L_syn| < xi (Eq. 2)
    quantile: float = 0.85  # lambda = this quantile of the movie's in-band similarities (docs/model.md "Losses")
    tau: float = 0.07  # M-step InfoNCE temperature (docs/model.md "Losses")
    prior: float = 0.0  # variant: story-order prior added before thresholding ...
    prior_final: float = 0.0  # ... annealed linearly to this ...
    prior_epochs: float = 0.0  # ... over this many epochs (0: constant prior)


@dataclass(frozen=True)
class DistillConfig:
    """Act distillation, Eq. 5-8 (``losses.distillation_loss``); defaults as the paper writes them."""

    cosine: bool = False  # variant: Eq. 5 on cosine similarities (the paper writes dot products)
    tau: float = 0.07  # Eq. 5 temperature (the paper gives no value)
    teacher_tau: float = 1.0  # variant: Eq. 6 scores divided by this (1: as written)
    direction: Literal["literal", "teacher_student"] = "literal"  # Eq. 8's KL(O||P); variant: KL(P||O), P detached


@dataclass(frozen=True)
class LossWeights:
    """Act loss = sum of weight * loss (the paper gives no weights; 1 each by default)."""

    sync: float = 1.0
    distill: float = 1.0
    synopsis: float = 1.0
    shot_tp: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Settings every task's trainer reads; defaults are ``scene-small``'s."""

    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 1e-3  # peak learning rate (--lr overrides)
    weight_decay: float = 0.01
    schedule: Literal["cosine", "constant"] = "cosine"  # per step, to 0 at the last epoch
    warmup_epochs: float = 0.5  # linear warm-up, may be fractional
    epochs: int = 30  # --epochs overrides (scene-small: chosen on validation, docs/training.md)
    batch_size: int = 64  # windows (scene) or movies (act); --batch-size overrides
    modality_dropout: float = 0.1  # per row and modality while training, in [0, 1)
    grad_clip: float = 1.0  # max global gradient norm per step; 0 = no clipping


@dataclass(frozen=True)
class SceneTrainConfig(TrainConfig):
    """``train`` of a scene config (docs/training.md): the common settings only."""


@dataclass(frozen=True)
class ActTrainConfig(TrainConfig):
    """``train`` of an act config (supp. Sec. 4-5, docs/training.md); defaults are ``act-small``'s."""

    warmup_epochs: float = 1.0
    epochs: int = 20
    batch_size: int = 2
    loss_weights: LossWeights = field(default_factory=LossWeights)
    sync: SyncConfig = field(default_factory=SyncConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass(frozen=True)
class SynopsisTrainConfig(TrainConfig):
    """``train`` of a synopsis config (TRIPOD sentence-level TPs, docs/training.md "Synopsis
    task"); defaults are the packaged ``synopsis`` config's. ``modality_dropout`` is unused
    (one input: the sentences)."""

    lr: float = 5e-4
    epochs: int = 20
    batch_size: int = 8  # synopses per step
    weight_decay: float = 0.05
    modality_dropout: float = 0.0
    label_smoothing: float = 0.1  # mass spread over the sentences next to a gold one, see tasks.py


@dataclass(frozen=True)
class SynopsisConfig:
    """The act synopsis model (Tab. 1b "Syn. Model" column)."""

    max_len: int  # most sentences per synopsis: 60
    n_bottleneck: int  # 20
    dropout: float  # 0.1
    n_layers: int  # 1
    position_bins: int = 0  # per-TP logit bias over relative-position bins (0: none; docs/training.md)


TRAIN_SCHEMA: dict[str, type[TrainConfig]] = {"scene": SceneTrainConfig, "act": ActTrainConfig,
                                              "synopsis": SynopsisTrainConfig}


@dataclass(frozen=True)
class MegaConfig:
    """One MEGA model (supp. Sec. 1, Tab. 1a/1b); comments give scene / act values.

    Task "synopsis" is the act model's synopsis network on its own (``SynopsisModel``): the
    top-level keys are then that network's (``max_len`` sentences, ``n_bottleneck`` Align.PE
    bins, ``width``, ``ffn_width``, ``n_unimodal`` layers, ``n_heads``, ``dropout``, ...;
    ``n_fusion`` must be 1 and ``synopsis`` null), the same values
    :func:`synopsis_model_config` derives from an act config, so a synopsis checkpoint can
    initialise an act model's synopsis network."""

    task: Literal["scene", "act", "synopsis"]
    max_len: int  # L: 17 (scene) / 3000 (act)
    n_bottleneck: int  # L_n: bottleneck tokens = Align.PE bins: 2 / 100
    width: int  # C: 768 / 128
    ffn_width: int  # C_k: 3072 / 128
    n_unimodal: int  # N_u: 2 / 1
    n_fusion: int  # N_f: 1 / 1
    n_heads: int  # 8 (BaSSL) / 4 (our choice, see docs/model.md)
    dropout: float  # p: 0.1 / 0.5
    positional: Literal["learned", "sinusoidal"]  # docs/model.md choice 2
    align_pe: bool = True  # ablation switch (Tab. 2a)
    align_pe_in_bottleneck: bool = True  # ablation switch (Tab. 2b)
    # The named variants' additions (docs/model.md "Variants"); the defaults are the paper's model.
    bottleneck_seed: Literal["none", "bin_mean"] = "none"  # "bin_mean": token k starts as the mean of bin k's shots
    relation_features: Literal["none", "cut"] = "none"  # scene: similarities inside the window (docs/model.md)
    position_bins: int = 0  # act: the shot model's TP position head; synopsis: SynopsisConfig.position_bins
    decode_distance_weight: float = 0.0  # synopsis: λ of the minimum-Bayes-risk decision (0: argmax)
    synopsis_guidance: bool = False  # act: a movie's synopsis, when it has one, guides the prediction (docs/model.md)
    synopsis: Union[SynopsisConfig, None] = None  # act only: the synopsis model (Tab. 1b)
    train: Union[TrainConfig, None] = None  # None: the task's defaults (TRAIN_SCHEMA)

    @property
    def n_classes(self) -> int:
        """N_c, fixed by the task: 2 (boundary or not) for scene, 5 turning points otherwise."""
        return 2 if self.task == "scene" else 5

    def __post_init__(self) -> None:
        if self.train is None and self.task in TRAIN_SCHEMA:
            object.__setattr__(self, "train", TRAIN_SCHEMA[self.task]())
        problem = _value_problem(self)
        if problem:
            raise MegaPipeError(f"invalid MEGA config: {problem[0]}: {problem[1]}")


# Fields that shape a synopsis network's weights and computation (not dropout, not training).
SYNOPSIS_ARCHITECTURE = ("max_len", "n_bottleneck", "width", "ffn_width", "n_unimodal", "n_heads",
                         "positional", "align_pe", "align_pe_in_bottleneck", "position_bins")


def synopsis_model_config(cfg: MegaConfig, n_modalities: int = 1) -> MegaConfig:
    """The config of the synopsis network as a task-"synopsis" config: ``cfg`` itself for a
    synopsis config; for an act config with ``n_modalities`` shot modalities, its ``synopsis``
    section at width C·M and FFN C_k·M (Tab. 1b synopsis column, ``SynopsisModel``)."""
    if cfg.task == "synopsis":
        return cfg
    if cfg.synopsis is None:
        raise MegaPipeError(f"the {cfg.task!r} config has no synopsis section")
    syn = cfg.synopsis
    return dataclasses.replace(
        cfg, task="synopsis", max_len=syn.max_len, n_bottleneck=syn.n_bottleneck,
        width=cfg.width * n_modalities, ffn_width=cfg.ffn_width * n_modalities,
        n_unimodal=syn.n_layers, n_fusion=1, dropout=syn.dropout,
        synopsis=None, position_bins=syn.position_bins, relation_features="none",
        decode_distance_weight=0.0, synopsis_guidance=False, train=None)


# --- What a config is, in words ---------------------------------------------------------------


def describe_model(cfg: MegaConfig) -> dict:
    """What a config trains, named for what it is (docs/model.md "Variants"): ``"MEGA"`` only
    when it is the paper's model with the paper's training (supp. Tab. 1, Eq. 1-8), else
    ``"MEGA variant"`` with every addition (``additions``: parts the paper does not have) and
    every departure (``departures``: paper parts done otherwise, or left out) listed by name.
    ``model-summary``, ``train``, ``eval`` and ``segment`` report it."""
    additions, departures = [], []
    if cfg.bottleneck_seed != "none":
        additions.append(f"bottleneck_seed={cfg.bottleneck_seed}")
    if cfg.relation_features != "none":
        additions.append(f"relation_features={cfg.relation_features}")
    if cfg.position_bins:
        additions.append(f"position_bins={cfg.position_bins}")
    if cfg.decode_distance_weight:
        additions.append(f"decode_distance_weight={cfg.decode_distance_weight}")
    if cfg.synopsis_guidance:
        additions.append("synopsis_guidance")
    if cfg.synopsis is not None and cfg.synopsis.position_bins:
        additions.append(f"synopsis.position_bins={cfg.synopsis.position_bins}")
    if not cfg.align_pe:
        departures.append("no Align.PE")
    elif not cfg.align_pe_in_bottleneck:
        departures.append("no Align.PE in the bottleneck tokens")
    train = cfg.train
    if isinstance(train, ActTrainConfig):
        sync, kd = train.sync, train.distill
        if sync.space != "fused":
            departures.append(f"sync.space={sync.space} (the paper synchronises fused embeddings)")
        if sync.prior:
            additions.append(f"sync.prior={sync.prior}")
        if kd.direction != "literal":
            departures.append(f"distill.direction={kd.direction} (Eq. 8 is KL(O||P))")
        if kd.cosine or kd.teacher_tau != 1.0:
            departures.append(f"distill cosine={kd.cosine}, teacher_tau={kd.teacher_tau}")
    paper = not additions and not departures
    return {"name": "MEGA" if paper else "MEGA variant", "task": cfg.task,
            "additions": additions, "departures": departures}


# --- Loading -----------------------------------------------------------------------------------


#: The packaged configs of ``train --task moment`` (``model/moment.py``'s ``CONFIGS``, named here
#: without importing it, so that a MEGA config's error can point at them).
MOMENT_CONFIGS = ("moment-paper", "moment-small")


def packaged_configs(task: str | None = None) -> list[str]:
    """Names of the configs shipped in model/configs (the paper's, and small ones for CPU); with
    ``task``, those that train it (task synopsis also trains an act config's synopsis network)."""
    folder = importlib.resources.files("mega_pipe.model") / "configs"
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
    if task is None:
        return names
    fits = ("act", "synopsis") if task == "synopsis" else (task,)
    return [name for name in names if _packaged_task(name) in fits]


def _packaged_task(name: str) -> str | None:
    text = (importlib.resources.files("mega_pipe.model") / "configs" / f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text).get("task")


def _no_such_config(name: str, task: str | None) -> str:
    """One line: ``name`` is no config; the packaged ones for ``task`` (None: all, by task)."""
    if task is not None:
        packaged = f"a packaged config for --task {task} ({', '.join(packaged_configs(task))})"
    else:
        by_task: dict[str, list[str]] = {}
        for config in packaged_configs():
            by_task.setdefault(str(_packaged_task(config)), []).append(config)
        groups = [f"{kind}: " + ", ".join(names) for kind, names in by_task.items()]
        packaged = f"a packaged config ({'; '.join(groups)})"
    hint = f"; {name} is a config of `train --task moment`" if name in MOMENT_CONFIGS else ""
    return f"model config {name!r} is neither {packaged} nor a JSON file{hint}"


def load_config(task_or_path: str, for_task: str | None = None, **overrides: Any) -> MegaConfig:
    """Load a packaged config ("scene", "act", "scene-small", ...) or a JSON file, then apply
    overrides, and check every key (one-line MegaPipeError naming the file and key path).
    ``for_task``: the task it is loaded for, whose packaged configs an unknown name's error lists.

    Overrides replace whole top-level fields (``load_config("act", dropout=0.0)``); that keeps
    the rule simple and makes an override of ``train`` or ``synopsis`` explicit about every key
    (given as a dict, checked like the file, or as a dataclass instance).
    """
    packaged = importlib.resources.files("mega_pipe.model") / "configs" / f"{task_or_path}.json"
    if "/" not in task_or_path and packaged.is_file():   # "scene", "act", "scene-small", ...
        text, origin = packaged.read_text(encoding="utf-8"), f"model/configs/{task_or_path}.json"
    else:
        path = Path(task_or_path)
        if not path.is_file():
            raise MegaPipeError(_no_such_config(task_or_path, for_task))
        text, origin = read_text(path, "model config"), str(path)
    data = parse_json(text, origin)
    if not isinstance(data, dict):
        raise MegaPipeError(f"{origin}: must be a JSON object")
    data.update(overrides)
    return config_from_dict(data, origin)


def config_from_dict(data: dict, origin: str = "model config") -> MegaConfig:
    """Check plain data (a config file's, or a checkpoint's ``config``) and build the config."""
    try:
        task = data.get("task") if isinstance(data, dict) else None
        if task not in TASKS:
            raise _Problem("task", f"expected one of {_choices(TASKS)}, got {_show(task)}"
                           if "task" in data else "required")
        cfg = _build(MegaConfig, data, "", {"train": TRAIN_SCHEMA[task]})
        if task == "act" and cfg.synopsis is None:
            raise _Problem("synopsis", "required for task \"act\" (the synopsis model)")
    except _Problem as problem:
        raise MegaPipeError(f"{origin}: {problem.key}: {problem.message}") from None
    except MegaPipeError as exc:   # a value check of __post_init__
        raise MegaPipeError(f"{origin}: {str(exc).removeprefix('invalid MEGA config: ')}") from None
    return cfg


def config_to_dict(cfg: MegaConfig) -> dict:
    """The config as plain JSON-able data; ``config_from_dict(config_to_dict(cfg)) == cfg``."""
    return dataclasses.asdict(cfg)


# Keys that older checkpoints carry and nothing ever read (removed from the schema).
RETIRED_TRAIN_KEYS = ("loss", "label_position", "content_probe")
# Model and distillation keys of options measured and removed (issue 19), with the value that
# meant "off" (None: any value is fine — the key only restated what is now fixed): a checkpoint
# written with them off loads; one that used them cannot be rebuilt.
RETIRED_OFF = {"n_classes": None, "align_scope": "sequence", "relation_space": None, "content_head": False,
               "content_context": 0, "content_space": None, "content_contrast": None, "content_shot": None,
               "context_window": 0}
RETIRED_DISTILL_OFF = {"mask": "none", "fused_after": None, "teacher_grad": False, "with_shot_gold": False,
                       "start_epoch": 0.0}


def checkpoint_config(data: dict, origin: str) -> MegaConfig:
    """A checkpoint's stored config: as :func:`config_from_dict`, tolerating retired keys."""
    if "bottleneck_seed" not in data:   # written before the key existed: free bottleneck tokens
        data = {**data, "bottleneck_seed": "none"}
    if isinstance(data.get("relation_features"), bool):   # written when the key was a switch
        data = {**data, "relation_features": "window" if data["relation_features"] else "none"}
    used = [f"{k}={data[k]!r}" for k, off in RETIRED_OFF.items() if k in data and off is not None and data[k] != off]
    if data.get("relation_features") == "window" or (
            data.get("relation_features") == "cut" and data.get("relation_space") == "input"):
        used.append(f"relation_features={data.get('relation_features')!r} ({data.get('relation_space', 'input')})")
    data = {k: v for k, v in data.items() if k not in RETIRED_OFF}
    train = data.get("train")
    if isinstance(train, dict):
        distill = train.get("distill")
        if isinstance(distill, dict):
            used += [f"distill.{k}={distill[k]!r}" for k, off in RETIRED_DISTILL_OFF.items() if k in distill and distill[k] != off]
            train = {**train, "distill": {k: v for k, v in distill.items() if k not in RETIRED_DISTILL_OFF}}
        data = {**data, "train": {k: v for k, v in train.items() if k not in RETIRED_TRAIN_KEYS}}
    if used:
        raise MegaPipeError(f"{origin}: trained with options that were measured and removed "
                            f"({', '.join(used)}; docs/model.md \"Variants\"): retrain it with a packaged config")
    return config_from_dict(data, origin)


# --- Checking ------------------------------------------------------------------------------------


class _Problem(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (str, bool, int, float, type(None))) else type(value).__name__


def _choices(values) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _build(cls: type, data: Any, prefix: str, schema: dict[str, type] | None = None) -> Any:
    """``data`` (a dict) -> ``cls``: unknown keys, missing required keys and types checked."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise _Problem(prefix.rstrip(".") or "config", f"expected an object, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _Problem(prefix + unknown[0], f"unknown key (known: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise _Problem(key, "required")
            continue
        kind = (schema or {}).get(name, hints[name])
        values[name] = _value(kind, data[name], key)
    return cls(**values)


def _value(kind: Any, value: Any, key: str) -> Any:
    """One value against its annotation (bool, int, float, Literal, dataclass, Optional)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:   # X | None
        if value is None:
            return None
        (kind,) = [a for a in args if a is not type(None)]
        return _value(kind, value, key)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, key + ".")
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise _Problem(key, f"expected one of {_choices(args)}, got {_show(value)}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise _Problem(key, f"expected true or false, got {_show(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Problem(key, f"expected an integer, got {_show(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Problem(key, f"expected a number, got {_show(value)}")
        return float(value)
    raise TypeError(f"config schema: unsupported annotation {kind!r} for {key}")


class _Checks:
    """Range checks in the order they are made: ``(key path, ok, message)``."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bool, str]] = []

    def add(self, key: str, ok: bool, message: str) -> None:
        self.items.append((key, ok, message))

    def positive_int(self, key: str, value: Any, minimum: int = 1) -> None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        self.add(key, ok, f"must be an integer >= {minimum}, got {value!r}")

    def in_range(self, key: str, value: Any, low: float, high: float, high_open: bool = True) -> None:
        ok = isinstance(value, (int, float)) and low <= value and (value < high if high_open else value <= high)
        self.add(key, ok, f"must be in [{low}, {high}{')' if high_open else ']'}, got {value!r}")

    def first_problem(self) -> tuple[str, str] | None:
        return next(((key, message) for key, ok, message in self.items if not ok), None)


def _value_problem(cfg: MegaConfig) -> tuple[str, str] | None:
    """The first value out of range (key path, message), or None; types are checked at load."""
    checks = _Checks()
    _check_model(cfg, checks)
    _check_heads(cfg, checks)
    _check_synopsis(cfg, checks)
    _check_train(cfg, checks)
    return checks.first_problem()


def _check_model(cfg: MegaConfig, checks: _Checks) -> None:
    """The architecture's sizes (Tab. 1b's rows) and the task."""
    checks.add("task", cfg.task in TASKS, f"expected one of {_choices(TASKS)}, got {cfg.task!r}")
    for name in ("max_len", "n_bottleneck", "width", "ffn_width", "n_fusion", "n_heads"):
        checks.positive_int(name, getattr(cfg, name))
    checks.positive_int("n_unimodal", cfg.n_unimodal, minimum=0)
    checks.add("width", not isinstance(cfg.width, int) or not isinstance(cfg.n_heads, int)
               or cfg.n_heads < 1 or cfg.width % cfg.n_heads == 0,
               f"{cfg.width} is not divisible by n_heads {cfg.n_heads}")
    checks.in_range("dropout", cfg.dropout, 0.0, 1.0)
    checks.add("max_len", cfg.task != "scene" or not isinstance(cfg.max_len, int) or cfg.max_len >= 3,
               f"a scene window is the shot and at least one on each side (the window has "
               f"2·⌊(max_len − 1)/2⌋ + 1 shots): max_len >= 3, got {cfg.max_len}")


def _check_heads(cfg: MegaConfig, checks: _Checks) -> None:
    """The variants' additions (position head, decoding, relation features): each for its task."""
    checks.positive_int("position_bins", cfg.position_bins, minimum=0)
    checks.add("position_bins", cfg.task != "scene" or cfg.position_bins == 0,
               "only for tasks \"act\" (the shot model's) and \"synopsis\"")
    checks.add("decode_distance_weight", cfg.task == "synopsis" or cfg.decode_distance_weight == 0,
               "only for task \"synopsis\"")
    checks.add("synopsis_guidance", cfg.task == "act" or not cfg.synopsis_guidance, "only for task \"act\"")
    checks.add("decode_distance_weight", isinstance(cfg.decode_distance_weight, (int, float))
               and cfg.decode_distance_weight >= 0, "must be a number >= 0")
    checks.add("relation_features", cfg.relation_features == "none" or (cfg.task == "scene" and cfg.max_len >= 2),
               "only for task \"scene\" (similarities inside the max_len-shot window, max_len >= 2)")


def _check_synopsis(cfg: MegaConfig, checks: _Checks) -> None:
    """A synopsis config's one stream, and an act config's synopsis section."""
    if cfg.task == "synopsis":
        checks.add("n_fusion", cfg.n_fusion == 1, f"must be 1 for task \"synopsis\" (one stream, "
                   f"nothing to fuse), got {cfg.n_fusion!r}")
    if cfg.synopsis is not None:
        checks.add("synopsis", cfg.task == "act", "only for task \"act\" (use null; a synopsis config's "
                   "top-level keys are the synopsis model)" if cfg.task == "synopsis" else
                   "only for task \"act\" (use null)")
        for name in ("max_len", "n_bottleneck", "n_layers"):
            checks.positive_int(f"synopsis.{name}", getattr(cfg.synopsis, name))
        checks.positive_int("synopsis.position_bins", cfg.synopsis.position_bins, minimum=0)
        checks.in_range("synopsis.dropout", cfg.synopsis.dropout, 0.0, 1.0)


def _check_train(cfg: MegaConfig, checks: _Checks) -> None:
    """The ``train`` section: its schema for the task, then its values."""
    schema = TRAIN_SCHEMA.get(cfg.task)
    checks.add("train", schema is None or type(cfg.train) is schema,
               f"expected {schema.__name__ if schema else 'a TrainConfig'}, got {type(cfg.train).__name__}")
    train = cfg.train
    if isinstance(train, TrainConfig):
        checks.add("train.lr", train.lr > 0, f"must be > 0, got {train.lr!r}")
        checks.add("train.weight_decay", train.weight_decay >= 0, f"must be >= 0, got {train.weight_decay!r}")
        checks.add("train.warmup_epochs", train.warmup_epochs >= 0, f"must be >= 0, got {train.warmup_epochs!r}")
        checks.positive_int("train.epochs", train.epochs)
        checks.positive_int("train.batch_size", train.batch_size)
        checks.in_range("train.modality_dropout", train.modality_dropout, 0.0, 1.0)
        checks.add("train.grad_clip", train.grad_clip >= 0, f"must be >= 0 (0: no clipping), got {train.grad_clip!r}")
    if isinstance(train, SynopsisTrainConfig):
        checks.in_range("train.label_smoothing", train.label_smoothing, 0.0, 1.0)
    if isinstance(train, ActTrainConfig):
        _check_act_train(train, checks)


def _check_act_train(train: ActTrainConfig, checks: _Checks) -> None:
    """Loss weights, synchronisation and distillation settings of an act config."""
    for name, weight in dataclasses.asdict(train.loss_weights).items():
        checks.add(f"train.loss_weights.{name}", weight >= 0, f"must be >= 0, got {weight!r}")
    sync, distill = train.sync, train.distill
    checks.in_range("train.sync.xi", sync.xi, 0.0, 1.0, high_open=False)
    checks.add("train.sync.xi", sync.xi > 0, f"must be > 0, got {sync.xi!r}")
    checks.in_range("train.sync.quantile", sync.quantile, 0.0, 1.0, high_open=False)
    checks.add("train.sync.prior_epochs", sync.prior_epochs >= 0, f"must be >= 0, got {sync.prior_epochs!r}")
    for key, value in (("train.sync.tau", sync.tau), ("train.distill.tau", distill.tau),
                       ("train.distill.teacher_tau", distill.teacher_tau)):
        checks.add(key, value > 0, f"must be > 0, got {value!r}")
