"""Small run-time facts shared by every command: the code version and the compute device."""
from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import MegaPipeError


def code_version() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("mega-pipe")
    except PackageNotFoundError:
        v = "unknown"
    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"version": v, "commit": commit}


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
