"""Compute devices: which one a run uses, and the precision it computes in there."""
from __future__ import annotations

import contextlib

from mega_pipe.manifests.errors import MegaPipeError


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
