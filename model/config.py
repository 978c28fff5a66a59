"""MEGA hyper-parameters as data.

The architecture numbers of mega-spec §1.2.1 (Tab. 1b) live in ``model/configs/<task>.json``;
this module only loads them into a frozen :class:`MegaConfig` and checks them, so a sweep or an
ablation is a different JSON file (or an override), never a code change. Every field is
validated here, once, so the model code can trust its config and a typo in a JSON file is
reported as one clear line instead of a shape error deep inside a forward pass.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mega_pipe.manifests.errors import MegaPipeError

TASKS = ("scene", "act")
POSITIONAL_KINDS = ("learned", "sinusoidal")
ALIGN_SCOPES = ("sequence", "movie")
SYNOPSIS_KEYS = ("max_len", "n_bottleneck", "dropout", "n_layers")


@dataclass(frozen=True)
class MegaConfig:
    """One MEGA model (mega-spec §1.2, Tab. 1a/1b); comments give scene / act values."""

    task: str  # "scene" | "act"
    max_len: int  # L: 17 (scene) / 3000 (act)
    n_bottleneck: int  # L_n: bottleneck tokens = Align.PE bins: 2 / 100
    width: int  # C: 768 / 128
    ffn_width: int  # C_k: 3072 / 128
    n_unimodal: int  # N_u: 2 / 1
    n_fusion: int  # N_f: 1 / 1
    n_heads: int  # 8 (BaSSL) / 4 (our choice, see docs/model.md)
    dropout: float  # p: 0.1 / 0.5
    n_classes: int  # N_c: 2 / 5
    positional: str  # "learned" | "sinusoidal" (§5 #5)
    align_pe: bool = True  # ablation switch (Tab. 2a)
    align_pe_in_bottleneck: bool = True  # ablation switch (Tab. 2b)
    align_scope: str = "sequence"  # "sequence": r_i within the input (§5 #2); "movie": caller passes r_i
    synopsis: dict | None = None  # act only: {"max_len", "n_bottleneck", "dropout", "n_layers"}
    train: dict = field(default_factory=dict)  # optimiser / loss defaults, read by the trainer

    def __post_init__(self) -> None:
        _validate(self)


def packaged_configs() -> list[str]:
    """Names of the configs shipped in model/configs (the paper's, and small ones for CPU)."""
    folder = importlib.resources.files("mega_pipe.model") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_config(task_or_path: str, **overrides: Any) -> MegaConfig:
    """Load the packaged config of a task ("scene", "act") or a JSON file, then apply overrides.

    Overrides replace whole top-level fields (``load_config("act", dropout=0.0)``); that keeps
    the rule simple and makes an override of ``train`` or ``synopsis`` explicit about every key.
    """
    packaged = importlib.resources.files("mega_pipe.model") / "configs" / f"{task_or_path}.json"
    if "/" not in task_or_path and packaged.is_file():   # "scene", "act", "scene-small", ...
        text, origin = packaged.read_text(encoding="utf-8"), f"packaged {task_or_path}.json"
    else:
        path = Path(task_or_path)
        if not path.is_file():
            raise MegaPipeError(
                f"model config {task_or_path!r} is neither a packaged config ({', '.join(packaged_configs())}) "
                f"nor a JSON file"
            )
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MegaPipeError(f"model config {origin} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MegaPipeError(f"model config {origin} must be a JSON object")
    data.update(overrides)
    known = {f.name for f in dataclasses.fields(MegaConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MegaPipeError(f"model config {origin}: unknown field(s) {', '.join(unknown)}")
    try:
        return MegaConfig(**data)
    except TypeError as exc:  # a required field is missing
        raise MegaPipeError(f"model config {origin}: {exc}") from None


def config_to_dict(cfg: MegaConfig) -> dict:
    """The config as plain JSON-able data; ``MegaConfig(**config_to_dict(cfg)) == cfg``."""
    return dataclasses.asdict(cfg)


# Act training knobs (docs/training.md); the loss functions' defaults are the paper's literal forms.
SYNC_KEYS = ("space", "xi", "quantile", "tau", "prior", "prior_final", "prior_epochs")
SYNC_SPACES = ("fused", "content")
DISTILL_KEYS = ("tau", "direction", "cosine", "teacher_tau")


def _validate(cfg: MegaConfig) -> None:
    """Reject configs that would fail (or silently misbehave) at build or forward time."""

    def fail(message: str) -> None:
        raise MegaPipeError(f"invalid MEGA config: {message}")

    if cfg.task not in TASKS:
        fail(f"task must be one of {TASKS}, got {cfg.task!r}")
    for name in ("max_len", "n_bottleneck", "width", "ffn_width", "n_fusion", "n_heads", "n_classes"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            fail(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(cfg.n_unimodal, int) or isinstance(cfg.n_unimodal, bool) or cfg.n_unimodal < 0:
        fail(f"n_unimodal must be a non-negative integer, got {cfg.n_unimodal!r}")
    if cfg.width % cfg.n_heads:
        fail(f"width {cfg.width} is not divisible by n_heads {cfg.n_heads}")
    if not 0.0 <= cfg.dropout < 1.0:
        fail(f"dropout must be in [0, 1), got {cfg.dropout!r}")
    if cfg.positional not in POSITIONAL_KINDS:
        fail(f"positional must be one of {POSITIONAL_KINDS}, got {cfg.positional!r}")
    if cfg.align_scope not in ALIGN_SCOPES:
        fail(f"align_scope must be one of {ALIGN_SCOPES}, got {cfg.align_scope!r}")
    if not isinstance(cfg.train, dict):
        fail("train must be a JSON object")
    sync, distill = cfg.train.get("sync", {}), cfg.train.get("distill", {})
    unknown = set(sync) - set(SYNC_KEYS) or set(distill) - set(DISTILL_KEYS)
    if unknown:
        fail(f"unknown train.sync/train.distill key(s) {sorted(unknown)} "
             f"(sync: {', '.join(SYNC_KEYS)}; distill: {', '.join(DISTILL_KEYS)})")
    dropout = cfg.train.get("modality_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        fail(f"train.modality_dropout must be in [0, 1), got {dropout!r}")
    if sync.get("space", "fused") not in SYNC_SPACES:
        fail(f"train.sync.space must be one of {SYNC_SPACES}, got {sync['space']!r}")
    if cfg.synopsis is not None:
        if not isinstance(cfg.synopsis, dict) or set(cfg.synopsis) != set(SYNOPSIS_KEYS):
            fail(f"synopsis must be null or an object with exactly the keys {SYNOPSIS_KEYS}")
        for name in ("max_len", "n_bottleneck", "n_layers"):
            value = cfg.synopsis[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"synopsis.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= cfg.synopsis["dropout"] < 1.0:
            fail(f"synopsis.dropout must be in [0, 1), got {cfg.synopsis['dropout']!r}")
