"""Provenance: which code wrote a file (recorded in manifests, checkpoints, boundaries)."""
from __future__ import annotations

import subprocess
from pathlib import Path


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
