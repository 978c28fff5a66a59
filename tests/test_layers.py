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


PACKAGES = ("pipeline", "model", "extractors", "manifests")
# Own modules a command-line handler imports inside the handler, not at the top: each pulls in
# torch, which would add ~2 s to every command's start, `--help` included (measured on 2 cores:
# 0.4 s -> 2.3 s; docs/architecture.md "Imports").
TORCH_MODULES = {"..segment", "...model.train", "...model.evaluate", "...model.summary",
                 "...model.predict", "..embed", "...model.pretrain", "...model.pretrain_train",
                 "..ray_train", "...model.moment", "...model.tasks"}
# Likewise the extractor protocol class (extractors/base.py needs torch; a run is planned, and
# decoding started, before any model library is imported: docs/decoding.md).
LAZY = {("extractors", ".base")}


def test_own_imports_resolve_by_reading_the_files(tmp_path):
    """Type checkers, structure viewers and IDEs read the tree; they do not run the install's
    import hook (the `mega_pipe.*` -> folder mapping of pyproject.toml). mypy, run on the four
    packages under a root that is *not* called mega_pipe, must resolve every own import: so
    imports between our modules are relative, and hold whatever the checkout is called."""
    import re

    (tmp_path / "tree").symlink_to(REPO, target_is_directory=True)
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=skip", "--explicit-package-bases",
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary",
         *[f"tree/{p}" for p in PACKAGES]],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert "error: " in run.stdout or run.returncode == 0, run.stderr[-2000:]
    own = re.compile(r'"(tree|mega_pipe)(\.|")')
    unresolved = [line for line in run.stdout.splitlines()
                  if re.search(r"\[(import-not-found|import-untyped|import|attr-defined)\]", line)
                  and (own.search(line) or "relative import" in line)]
    assert not unresolved, "\n".join(unresolved[:20])
    assert not re.search(r"No parent module|beyond top-level", run.stdout + run.stderr)


def test_own_imports_are_relative_and_at_module_top():
    """One import style in the four packages (relative), and own modules imported at the top of
    the module, except a command-line handler's import of a torch-loading module."""
    import ast

    absolute, nested = [], []
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            tree = ast.parse(f.read_text())
            top = {id(n) for n in tree.body}
            for n in ast.walk(tree):
                if not isinstance(n, (ast.Import, ast.ImportFrom)):
                    continue
                names = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
                if any(name.startswith("mega_pipe") for name in names) and \
                        not (isinstance(n, ast.ImportFrom) and n.level):
                    absolute.append(f"{f.relative_to(REPO)}:{n.lineno}")
                if isinstance(n, ast.ImportFrom) and n.level and id(n) not in top:
                    module = "." * n.level + (n.module or "")
                    if not ((pkg == "pipeline" and "cli" in f.parts and module in TORCH_MODULES)
                            or (pkg, module) in LAZY):
                        nested.append(f"{f.relative_to(REPO)}:{n.lineno} {module}")
    assert not absolute, absolute
    assert not nested, nested
