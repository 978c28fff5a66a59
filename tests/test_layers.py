"""The layers run one way (pipeline -> extractors | model -> manifests; extractors a leaf): the
import-linter contracts in pyproject.toml, checked by the real `lint-imports` on the installed
package, so a wrong-way import fails the test suite."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 kept, 0 broken" in run.stdout


def test_feature_folder_file_names_live_in_one_module():
    """The contract's file names are spelled out only by the feature-folder module."""
    names = ('"shots.parquet"', '"synopsis.parquet"', '"manifest.json"')
    offenders = []
    for pkg in ("pipeline", "model", "extractors", "manifests"):
        for f in (REPO / pkg).rglob("*.py"):
            if f.name == "features.py" and pkg == "manifests":
                continue
            text = f.read_text()
            offenders += [f"{f.relative_to(REPO)}: {n}" for n in names if n in text]
    assert not offenders, offenders
