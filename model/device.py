"""Compute devices: which one a run uses, and the precision it computes in there."""
from __future__ import annotations

import contextlib

from ..manifests.errors import MegaPipeError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available, else ``cpu``; ``cuda`` is checked. Imports torch only
    when it must (``cpu`` needs no check)."""
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise MegaPipeError("--device cuda: no CUDA device is available")
    return device


def autocast(device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (fast, no loss scaling needed); plain fp32 on CPU."""
    if device.type == "cuda":
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def rng_state(device) -> dict:
    """The torch RNG state(s) a run draws from on ``device`` (CPU, plus CUDA's when used)."""
    import torch

    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device) -> None:
    """Restore what :func:`rng_state` saved."""
    import torch

    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
