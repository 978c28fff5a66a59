"""Parameter counts of MEGA configurations (``mega-pipe model-summary``): the fidelity check of
Tab. 1b's architecture against the paper's Tab. 2g/2h (docs/model.md, "Parameter counts")."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..manifests.errors import MegaPipeError
from .config import config_to_dict, describe_model, load_config
from .mega import MEGA, SynopsisModel


def count_parameters(module: nn.Module) -> int:
    """All parameters (shared ones once); buffers such as the sinusoidal PE are not parameters."""
    return sum(p.numel() for p in module.parameters())


def _part_of(name: str) -> str:
    """Which block of Tab. 1a (docs/model.md "Architecture") a MEGA parameter belongs to, from its qualified name."""
    top, *rest = name.split(".")
    if top != "streams":
        return top  # "fusion" | "head"
    block = rest[1]
    if block == "shot_encoder" and rest[2] == "position":
        return "positional"
    return block  # "shot_encoder" (linear + LayerNorm) | "align_pe" | "bottleneck" | "unimodal"


def model_summary(task: str, modality_dims: Mapping[str, int], *, sentence_dim: int = 384,
                  config: str | None = None) -> dict:
    """Parameter counts of the model of ``config`` (default: the packaged paper config of
    ``task``) for these modalities.

    For act the synopsis model (sentence dim ``sentence_dim``; 384 = the MiniLM encoder the
    pipeline uses for subtitles and synopses) is included, because Tab. 2h's 6.78M counts both
    networks. Built on the meta device, so nothing is allocated. Bad modalities are a
    MegaPipeError.
    """
    cfg = load_config(config or task, task)
    if cfg.task != task:
        raise MegaPipeError(f"model-summary: config {config!r} is for task {cfg.task!r}, not {task!r}")
    try:
        with torch.device("meta"):
            model = MEGA(cfg, modality_dims)
            synopsis = SynopsisModel(cfg, sentence_dim, len(modality_dims)) if cfg.synopsis else None
    except ValueError as exc:
        raise MegaPipeError(f"model-summary: {exc}") from None
    by_part: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = _part_of(name)
        by_part[part] = by_part.get(part, 0) + param.numel()
    if synopsis is not None:
        by_part["synopsis_model"] = count_parameters(synopsis)
    return {
        "task": task,
        "model": describe_model(cfg),
        "modalities": dict(modality_dims),
        "parameters": count_parameters(model) + by_part.get("synopsis_model", 0),
        "parameters_by_part": by_part,
        "config": config_to_dict(cfg),
    }
