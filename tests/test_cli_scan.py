"""Every subcommand, driven with the mistakes a user makes: an output location that cannot be
written, a missing input, an input of the wrong type. Each must answer with one line on stderr
(``mega-pipe: error: ...``), the documented exit status (2: README "exit status"), and leave
nothing behind — no file, no empty folder, no change to the inputs.

Unwritable locations are made two ways that hold for root too: a path under a regular file, and
a path in ``/proc`` (where :func:`os.access` says "writable" to root but creating a file fails).
Real commands on real files: a small FFmpeg movie, its real ``segment`` output, a real synthetic
manifest and a real (one-epoch) checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.demo import make_movie

TINY = ["--models", "tiny", "--no-progress", "--modalities", "clip"]
PROC = Path("/proc")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("scan-world")
    movie = root / "m.mp4"
    make_movie(movie, [2, 2, 2], size=(160, 90), audio=False)
    assert main(["segment", str(movie), "--out", str(root / "b.json"), "--features",
                 str(root / "feats"), *TINY]) == 0
    assert main(["manifest", "synth", str(root / "synth"), "--movies", "4"]) == 0
    assert main(["train", "--task", "scene", "--config", "scene-small", "--manifest",
                 str(root / "synth" / "manifest.jsonl"), "--out", str(root / "run"),
                 "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
    text = root / "notes.txt"
    text.write_text("not a movie, not JSON, not a checkpoint\n")
    return {"root": root, "movie": movie, "boundaries": root / "b.json",
            "features": root / "feats" / "m", "manifest": root / "synth" / "manifest.jsonl",
            "checkpoint": root / "run" / "best.pt", "text": text}


# Each command: a function (world, inp, out_file, out_dir) -> argv, where ``inp`` replaces the
# command's main input (None: the good one) and out_file / out_dir its output locations.
def _file(w, inp, key):
    return str(inp if inp is not None else w[key])


COMMANDS = {
    "extract": lambda w, inp, of, od: ["extract", _file(w, inp, "movie"), "--out", od, *TINY],
    "segment": lambda w, inp, of, od: ["segment", _file(w, inp, "movie"), "--out", of,
                                       "--features", str(w["root"] / "feats"), *TINY],
    "segment --features": lambda w, inp, of, od: ["segment", _file(w, inp, "movie"), "--out",
                                                  str(Path(od) / "b.json"), "--features", od,
                                                  *TINY],
    "export": lambda w, inp, of, od: ["export", _file(w, inp, "boundaries"), "--out", of + ".csv"],
    "export --apply": lambda w, inp, of, od: ["export", _file(w, inp, "boundaries"), "--apply",
                                              of + ".mkv", "--movie", str(w["movie"])],
    "report": lambda w, inp, of, od: ["report", _file(w, inp, "boundaries"), "--out",
                                      of + ".html", "--no-thumbnails"],
    "report --png": lambda w, inp, of, od: ["report", _file(w, inp, "boundaries"), "--out",
                                            str(w["root"] / "never.html"), "--png", od,
                                            "--no-thumbnails"],
    "demo": lambda w, inp, of, od: ["demo", "--out", od, "--no-progress", "--modalities", "clip"],
    "train": lambda w, inp, of, od: ["train", "--task", "scene", "--config", "scene-small",
                                     "--manifest", _file(w, inp, "manifest"), "--out", od,
                                     "--epochs", "1", "--device", "cpu", "--no-progress"],
    "eval": lambda w, inp, of, od: ["eval", "--checkpoint", _file(w, inp, "checkpoint"),
                                    "--manifest", str(w["manifest"]), "--out", od,
                                    "--device", "cpu"],
    "score": lambda w, inp, of, od: ["score", "--task", "scene", _file(w, inp, "text")],
    "manifest synth": lambda w, inp, of, od: ["manifest", "synth", od, "--movies", "2"],
    "manifest tripod": lambda w, inp, of, od: [
        "manifest", "tripod", "--train", str(inp or w["root"] / "tripod.csv"), "--features",
        str(w["root"] / "feats"), "--manifest", of + ".jsonl", "--synopsis-dir", od],
    "manifest movienet": lambda w, inp, of, od: [
        "manifest", "movienet", "--labels", str(w["root"]), "--shots", str(w["root"]),
        "--split-file", str(inp or w["text"]), "--features", str(w["root"] / "feats"),
        "--manifest", of + ".jsonl"],
    "weights fetch": lambda w, inp, of, od: ["weights", "fetch", "--weights-dir", od,
                                             "--model-set", "paper", "--modalities", "clip"],
}
# The commands whose input can be missing or of the wrong type (score's records: only wrong
# when missing; its good input is not needed here), and which are writers.
READERS = ["extract", "segment", "export", "export --apply", "report", "train", "eval", "score",
           "manifest tripod", "manifest movienet"]
WRITERS = [c for c in COMMANDS if c != "score"]


def _tree(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` with its kind, and a file's size and modification time (a
    folder's own time changes when a file is tried in it and removed: not a leftover)."""
    out = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = (True,) if p.is_dir() else (False, st.st_size, st.st_mtime_ns)
    return out


def _run(argv, capsys, w, tmp_path) -> tuple[int, str, str]:
    before = _tree(w["root"], tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    after = _tree(w["root"], tmp_path)
    left = sorted(set(after) - set(before))
    changed = sorted(p for p in before if p in after and after[p] != before[p])
    gone = sorted(set(before) - set(after))
    assert not left and not changed and not gone, (argv, left, changed, gone)
    return code, out, err


def _one_error_line(err: str, argv) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("mega-pipe: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, (argv, err)
    return errors[0]


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
@pytest.mark.parametrize("command", WRITERS)
def test_unwritable_output_is_one_line_exit_2_nothing_left(world, tmp_path, capsys, monkeypatch,
                                                           command, where):
    monkeypatch.chdir(tmp_path)
    if where == "proc":
        base = PROC / f"mega-pipe-scan-{os.getpid()}"
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        base = blocker / "sub"
    argv = COMMANDS[command](world, None, str(base / "out"), str(base / "dir"))
    code, out, err = _run(argv, capsys, world, tmp_path)
    line = _one_error_line(err, argv)
    assert code == 2, (argv, code, err)
    assert str(base) in line or "a-file" in line or "/proc" in line, line


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("problem", ["missing", "wrong-type"])
def test_bad_input_is_one_line_exit_2_nothing_left(world, tmp_path, capsys, monkeypatch, command,
                                                   problem):
    monkeypatch.chdir(tmp_path)
    inp = tmp_path / "no-such-file.mp4" if problem == "missing" else world["text"]
    if command in ("export", "report") and problem == "wrong-type":
        inp = world["movie"]                                  # a movie where JSON is expected
    argv = COMMANDS[command](world, inp, str(tmp_path / "o" / "out"), str(tmp_path / "d"))
    code, out, err = _run(argv, capsys, world, tmp_path)
    line = _one_error_line(err, argv)
    assert code == 2, (argv, code, err)
    assert inp.name in line, line


@pytest.mark.parametrize("argv", [
    ["train"], ["train", "--task", "bogus", "--manifest", "m", "--out", "o"],
    ["export", "b.json", "--format", "bogus"], ["manifest", "tripod", "--features", "f"],
    ["report", "b.json", "--out", "r.html", "--matrix-size", "x"], ["bogus-command"],
    ["segment"], ["extract", "--frame-size", "big"],
])
def test_usage_mistakes_are_one_line_exit_2(capsys, argv):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert not out
    assert err.count("\n") == 1 and err.startswith("mega-pipe: error: "), err
    assert "--help" in err and "usage:" not in err


def test_internal_errors_are_one_line_exit_1_and_debug_shows_the_traceback(capsys, monkeypatch):
    """An unexpected exception (a bug) is not a traceback on the user's screen: one line, status
    1, and ``--debug`` re-raises it."""
    import mega_pipe.pipeline.cli.train as train_cli

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(train_cli, "_cmd_score", broken)
    argv = ["score", "--task", "scene", "x.jsonl"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", *argv])


def test_runs_failing_after_their_checks_leave_no_folders(world, tmp_path, capsys, monkeypatch):
    """Output folders that do not exist yet are made only when something is written into them:
    a run that fails after its checks passed (here: a level the boundaries lack, thumbnails
    without the movie, a movie that is not there) leaves no empty folder behind."""
    monkeypatch.chdir(tmp_path)
    runs = [
        ["export", str(world["boundaries"]), "--out", "sub2/x.edl", "--level", "acts"],
        ["report", str(world["boundaries"]), "--out", "sub/dir/r.html", "--png", "figs/",
         "--movie", str(tmp_path / "gone.mp4")],
        ["segment", str(tmp_path / "gone.mp4"), "--out", "sub3/b.json", "--features",
         "new-features", *TINY],
        ["extract", str(world["text"]), "--out", "new-out", *TINY],
    ]
    for argv in runs:
        code, _, err = _run(argv, capsys, world, tmp_path)
        assert code == 2, (argv, err)
        _one_error_line(err, argv)
    assert list(tmp_path.iterdir()) == []
