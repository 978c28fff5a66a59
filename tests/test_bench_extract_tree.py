"""``bench/bench_extract.py --also-tree DIR``: DIR is the root of a plain checkout (``git worktree
add DIR COMMIT``); the child processes must import ``mega_pipe`` from DIR, never fall back to the
installed checkout, and the bench stops with one line when they would."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

_spec = importlib.util.spec_from_file_location("bench_extract", REPO / "bench" / "bench_extract.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def fake_tree(root: Path) -> Path:
    """A checkout-shaped folder: pipeline/ and pipeline/cli/ only, no mega_pipe folder; its
    ``python -m mega_pipe.pipeline.cli`` prints its arguments, then imports a module it lacks."""
    (root / "pipeline" / "cli").mkdir(parents=True)
    (root / "pipeline" / "__init__.py").write_text("")
    (root / "pipeline" / "cli" / "__init__.py").write_text("TREE = 'fake'\n")
    (root / "pipeline" / "cli" / "__main__.py").write_text(
        "import sys\nfrom . import TREE\nprint(TREE, sys.argv[1:], flush=True)\n"
        "import mega_pipe.pipeline.decode\n")
    return root


def shim_of(tmp_path: Path) -> Path:
    shim = tmp_path / "shim"
    shim.mkdir()
    return shim


def test_plain_pythonpath_would_import_another_checkout(tmp_path):
    """What --also-tree did before: DIR on PYTHONPATH imports no code from DIR."""
    tree = fake_tree(tmp_path / "wt")
    p = subprocess.run([sys.executable, "-c", "import mega_pipe.pipeline.cli as m; print(m.__file__)"],
                       env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    assert not (p.returncode == 0 and Path(p.stdout.strip()).resolve().is_relative_to(tree.resolve()))


def test_plain_tree_is_imported_and_nothing_else(tmp_path):
    tree = fake_tree(tmp_path / "wt")
    env, start, imported = bench.tree_env(tree, shim_of(tmp_path))
    assert imported == (tree / "pipeline" / "cli" / "__init__.py").resolve()
    assert start[-1] == str(tmp_path / "shim" / "mega_pipe")
    p = subprocess.run([*start, "extract", "a.mp4"], env=env, capture_output=True, text=True)
    assert p.stdout.strip() == "fake ['extract', 'a.mp4']"
    # the module the tree lacks is not taken from the installed checkout
    assert p.returncode != 0 and "ModuleNotFoundError" in p.stderr


def test_copy_of_the_real_code_runs_from_the_copy(tmp_path):
    tree = tmp_path / "wt"
    for pkg in ("pipeline", "extractors", "model", "manifests"):
        shutil.copytree(REPO / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    env, start, imported = bench.tree_env(tree, shim_of(tmp_path))
    assert imported == (tree / "pipeline" / "cli" / "__init__.py").resolve()
    p = subprocess.run([*start, "--version"], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr


def test_code_outside_the_tree_is_refused(tmp_path):
    tree = fake_tree(tmp_path / "wt")
    elsewhere = tmp_path / "elsewhere"
    (tree / "pipeline" / "cli").rename(elsewhere)
    (tree / "pipeline" / "cli").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SystemExit) as e:
        bench.tree_env(tree, shim_of(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and str(elsewhere) in msg and "not from" in msg


def test_not_a_checkout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        bench.tree_env(tmp_path / "empty", shim_of(tmp_path))
    assert "\n" not in str(e.value) and "no pipeline/__init__.py" in str(e.value)
