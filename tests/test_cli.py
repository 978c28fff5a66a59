"""The one command line (pipeline/cli/): every command is listed, the manifest group runs end to
end, old spellings still work, only the CLI prints, and logging goes to stderr."""
from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from mega_pipe.manifests.schema import read_manifest
from mega_pipe.pipeline.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("extract", "segment", "export", "report", "demo", "train", "eval", "score",
            "model-summary", "pretrain", "embed", "weights", "manifest", "search", "moments")


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_help_lists_every_command_and_hides_the_old_spellings(capsys):
    out = _help([], capsys)
    listed = [line.split()[0] for line in out.split("positional arguments:")[1]
              .split("options:")[0].splitlines()[2:] if line.startswith("    ") and
              not line.startswith("     ")]
    assert listed == list(COMMANDS), out
    assert "manifest-movienet" not in out and "manifest-tripod" not in out
    manifest = _help(["manifest"], capsys)
    assert all(name in manifest for name in ("movienet", "tripod", "synth"))
    assert "{list,fetch,verify}" in _help(["weights"], capsys)
    # the hidden aliases parse like the new spellings
    parser = build_parser()
    old = parser.parse_args(["manifest-tripod", "--train", "t.csv", "--features", "F",
                             "--manifest", "m.jsonl", "--synopsis-dir", "S"])
    new = parser.parse_args(["manifest", "tripod", "--train", "t.csv", "--features", "F",
                             "--manifest", "m.jsonl", "--synopsis-dir", "S"])
    assert old.func is new.func and old.train == new.train == Path("t.csv")


def test_console_script_lists_every_command():
    exe = Path(sys.executable).with_name("mega-pipe")
    run = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert all(f"    {c}" in run.stdout for c in COMMANDS), run.stdout


def test_manifest_synth_end_to_end(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["manifest", "synth", str(out), "--movies", "4"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.strip() == str(out / "manifest.jsonl")          # the result, on stdout only
    entries = read_manifest(out / "manifest.jsonl")
    assert [e.movie_id for e in entries] == [f"synth{i:04d}" for i in range(4)]
    assert all((e.features / "manifest.json").is_file() for e in entries)
    # and it trains as it is
    assert main(["train", "--task", "scene", "--config", "scene-small", "--manifest",
                 str(out / "manifest.jsonl"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--device", "cpu", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (tmp_path / "run" / "best.pt").is_file() and summary


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    argv = ["manifest", "synth", str(tmp_path / "x"), "--modalities", "clip"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mega-pipe: error: ") and err.count("\n") == 1
    from mega_pipe.manifests.errors import MegaPipeError

    with pytest.raises(MegaPipeError):
        main(["--debug", *argv])
    monkeypatch.setenv("MEGA_PIPE_DEBUG", "1")           # the environment default, read by main
    with pytest.raises(MegaPipeError):
        main(argv)


def test_library_logging_goes_to_stderr_in_the_cli_format(capsys):
    from mega_pipe.pipeline.cli import configure_logging

    configure_logging(debug=False)
    lib = logging.getLogger("mega_pipe.pipeline.extract")
    lib.info("decoded 3 frames")
    lib.warning("careful")
    lib.error("m: broken")
    lib.debug("hidden")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["decoded 3 frames", "warning: careful",
                                         "mega-pipe: error: m: broken"]
    configure_logging(debug=True)
    lib.debug("shown")
    assert capsys.readouterr().err == "debug: mega_pipe.pipeline.extract: shown\n"
    configure_logging(debug=False)
    ours = [h for h in logging.getLogger("mega_pipe").handlers
            if type(h).__name__ == "_StderrHandler"]
    assert len(ours) == 1                                           # never stacked


def _print_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(REPO)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "print"]


def test_only_the_cli_prints():
    """Library code reports through logging; results are printed by pipeline/cli/ only."""
    offenders, scanned = [], 0
    for pkg in ("pipeline", "model", "manifests", "extractors"):
        for f in sorted((REPO / pkg).rglob("*.py")):
            if (REPO / "pipeline" / "cli") in f.parents:
                continue
            offenders += _print_calls(f)
            scanned += 1
    assert scanned > 30 and not offenders, offenders
    assert _print_calls(REPO / "pipeline" / "cli" / "extract.py")     # the scan does see prints


def test_no_argparse_outside_the_cli():
    offenders = []
    for pkg in ("pipeline", "model", "manifests", "extractors"):
        for f in sorted((REPO / pkg).rglob("*.py")):
            if (REPO / "pipeline" / "cli") in f.parents:
                continue
            tree = ast.parse(f.read_text(), str(f))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{f.relative_to(REPO)}:{node.lineno}" for n in names
                              if n and n.split(".")[0] == "argparse"]
    assert not offenders, offenders


def test_readme_parameter_counts_are_what_model_summary_prints(capsys):
    """Every ``mega-pipe model-summary ... # N.NNM`` line of the README, run as written, prints a
    count that rounds to the N.NNM its comment states (issue 19: README counts = model-summary's)."""
    import re
    import shlex
    lines = [line for line in (REPO / "README.md").read_text().splitlines()
             if line.startswith("mega-pipe model-summary") and "#" in line]
    assert {shlex.split(line.split("#")[0])[3] for line in lines} == {"scene", "act"}
    for line in lines:
        command, comment = line.split("#", 1)
        stated = float(re.match(r"\s*([0-9.]+)M", comment).group(1))
        assert main(shlex.split(command)[1:]) == 0
        printed = json.loads(capsys.readouterr().out)["parameters"]
        assert round(printed / 1e6, 2) == stated, line
