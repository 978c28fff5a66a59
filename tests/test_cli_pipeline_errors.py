"""A new user's walkthrough, command by command: every mistake gets one line that says what to do,
nothing is replaced or ignored silently, long work shows progress, and the summaries read right.
Real small movies (FFmpeg), --models tiny extraction, real synthetic sets and trained checkpoints."""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import pytest
from conftest import SHARED, need
from mega_pipe.extractors.errors import WeightsNotFoundError
from mega_pipe.manifests.synth import SynthParams, generate
from mega_pipe.pipeline.cli import build_parser, main
from mega_pipe.pipeline.demo import SAMPLE_SYNOPSIS, make_movie

TINY = ["--models", "tiny", "--no-progress", "--device", "cpu"]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mega-pipe: error: "), err
    return err[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """A scene and an act checkpoint (neither act-sync) trained for an epoch on a synthetic set of
    the tiny set's clip and audio dimensions, and a 7-shot movie without audio."""
    root = tmp_path_factory.mktemp("walkthrough")
    manifest = generate(root / "synth", 4, modalities={"clip": 32, "audio": 24},
                        params=SynthParams(scenes=(8, 10), sentences=(6, 8)))
    out = {}
    for task, config in (("scene", "scene-small"), ("act", "act-small")):
        assert main(["train", "--task", task, "--config", config, "--manifest", str(manifest),
                     "--out", str(root / task), "--epochs", "1", "--device", "cpu",
                     "--no-progress"]) == 0
        out[task] = root / task / "best.pt"
    movie = root / "movie.mp4"
    make_movie(movie, [1.5] * 7, size=(160, 90), audio=False)
    synopsis = root / "synopsis.txt"
    synopsis.write_text(SAMPLE_SYNOPSIS)
    return {**out, "movie": movie, "synopsis": synopsis}


# -- 1. segment with a checkpoint of the tiny set's dimensions, under the default --models paper --
def test_segment_says_which_models_fit_the_checkpoint_before_any_work(runs, tmp_path, capsys):
    base = ["segment", str(runs["movie"]), "--out", str(tmp_path / "b.json"), "--features",
            str(tmp_path / "f"), "--no-progress", "--scene-checkpoint", str(runs["scene"]),
            "--act-checkpoint", str(runs["act"])]
    assert main(base) == 2
    err = _one_error(capsys)
    assert "expects clip:32,audio:24" in err and "clip:512,audio:768 (--models paper)" in err
    assert "use --models tiny" in err
    assert not (tmp_path / "f").exists() and not (tmp_path / "b.json").exists()
    assert main([*base, "--models", "tiny"]) == 0


def test_missing_weights_are_one_line_and_the_paths_come_with_debug(tmp_path, capsys, monkeypatch):
    import mega_pipe.extractors.registry as registry

    monkeypatch.setattr(registry, "resolve_weights", lambda entry, dirs=(): None)
    movie = tmp_path / "m.mp4"
    make_movie(movie, [1, 1], size=(160, 90), audio=False)
    args = ["extract", str(movie), "--out", str(tmp_path / "out"), "--modalities", "clip,place",
            "--no-progress"]
    assert main(args) == 2
    err = _one_error(capsys)
    assert "weights not found for 2 modalities (downloading not allowed): clip (ViT-B-32.pt), " \
           "place (resnet50_places365.pth.tar)" in err
    assert "--weights-dir" in err and "--models tiny" in err and "searched:" not in err
    with pytest.raises(WeightsNotFoundError) as e:
        main(["--debug", *args])
    assert "searched:" in e.value.detail and "searched:" in capsys.readouterr().err


# -- 2. manifest tripod --synopses-only: a progress bar on a terminal's stderr -----------------------
def _tripod_csv(path: Path, movies: int) -> Path:
    rows = list(csv.DictReader(open(need(SHARED / "tripod" / "TRIPOD_synopses_train.csv"),
                                    encoding="utf-8-sig", newline="")))
    def base(name: str) -> str:         # "Beloved (film)_2": a second annotation of a movie
        return name.rsplit("_", 1)[0] if name[-2:-1] == "_" else name

    names = list(dict.fromkeys(base(r["movie_name"]) for r in rows))[:movies]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if base(r["movie_name"]) in names)
    return path


def test_tripod_synopses_only_shows_progress_on_a_terminal(tmp_path, capsys, monkeypatch):
    args = ["manifest", "tripod", "--train", str(_tripod_csv(tmp_path / "t.csv", 2)),
            "--features", str(tmp_path / "features"), "--manifest", str(tmp_path / "m.jsonl"),
            "--synopsis-dir", str(tmp_path / "syn"), "--synopses-only", "--models", "tiny"]
    assert main(args) == 0                      # stderr not a terminal: no bar
    out = capsys.readouterr()
    assert "synopses" not in out.err and "wrote" in out.out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(args) == 0
    out = capsys.readouterr()
    assert re.search(r"synopses: .*2 ?movie", out.err) and "synopses:" not in out.out
    assert main([*args, "--no-progress"]) == 0
    assert "synopses:" not in capsys.readouterr().err


# -- 3. manifest synth never rewrites a set silently ------------------------------------------------
def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_synth_refuses_an_existing_set_and_overwrite_replaces_only_it(tmp_path, capsys):
    out = tmp_path / "SYNTH"
    assert main(["manifest", "synth", str(out), "--movies", "4", "--modalities", "clip:8"]) == 0
    (out / "notes.txt").write_text("mine")
    (out / "synth0100").mkdir()                 # a folder of that name the generator did not make
    (out / "synth0100" / "keep.txt").write_text("mine")
    before = _tree(out)
    capsys.readouterr()
    assert main(["manifest", "synth", str(out), "--movies", "2", "--modalities", "clip:8"]) == 2
    err = _one_error(capsys)
    assert f"{out} already holds a synthetic set (manifest.jsonl, 4 movie folders)" in err
    assert "--overwrite" in err
    assert _tree(out) == before                 # nothing touched
    assert main(["manifest", "synth", str(out), "--movies", "2", "--modalities", "clip:8",
                 "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.jsonl", "notes.txt", "synth0000",
                                                     "synth0001", "synth0100"]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2
    assert (out / "synth0100" / "keep.txt").read_text() == "mine"


# -- 4. outputs replaced say so ---------------------------------------------------------------------
def test_segment_and_export_say_when_they_replace_a_file(tmp_path, capsys):
    movie = tmp_path / "m.mp4"
    make_movie(movie, [1.5, 1.5, 1.5], size=(160, 90), audio=False)
    out, edl = tmp_path / "b.json", tmp_path / "x.edl"
    seg = ["segment", str(movie), "--out", str(out), "--features", str(tmp_path / "f"), *TINY,
           "--modalities", "clip"]
    assert main(seg) == 0
    assert "replacing" not in capsys.readouterr().err
    assert main(seg) == 0
    assert f"warning: replacing existing {out}" in capsys.readouterr().err
    assert main(["export", str(out), "--out", str(edl)]) == 0
    assert "replacing" not in capsys.readouterr().err
    assert main(["export", str(out), "--out", str(edl)]) == 0
    assert f"warning: replacing existing {edl}" in capsys.readouterr().err


# -- 5. unknown options and commands ----------------------------------------------------------------
@pytest.mark.parametrize("argv, said", [
    (["train", "--task", "scene", "--manifest", "m", "--out", "o", "--epochz", "1"],
     "train: unrecognized arguments: --epochz 1; did you mean --epochs? "
     "(`mega-pipe train --help` lists the options)"),
    (["pretrain", "--manifest", "m", "--out", "o", "--epochs", "1"],
     "pretrain: unrecognized arguments: --epochs 1; did you mean --pretrain-epochs? "
     "(`mega-pipe pretrain --help` lists the options)"),
    (["manifest", "synth", "S", "--movis", "3"],
     "manifest synth: unrecognized arguments: --movis 3; did you mean --movies? "
     "(`mega-pipe manifest synth --help` lists the options)"),
])
def test_an_unknown_option_points_to_its_command_and_the_closest_option(argv, said, capsys):
    assert main(argv) == 2
    assert _one_error(capsys) == f"mega-pipe: error: {said}"


def test_a_mistyped_command_gets_a_suggestion_and_no_hidden_alias(capsys):
    assert main(["segmnt", "x"]) == 2
    err = _one_error(capsys)
    assert "invalid choice: 'segmnt'; did you mean 'segment'?" in err
    assert "'search'" in err and "manifest-movienet" not in err and "manifest-tripod" not in err
    assert build_parser().parse_args(["manifest-movienet", "--labels", "l", "--shots", "s",
                                      "--split-file", "f", "--features", "F",
                                      "--manifest", "m"]).labels == Path("l")


# -- 6. a synopsis the act model does not read -------------------------------------------------------
def test_segment_warns_that_a_plain_act_checkpoint_ignores_the_synopsis(runs, tmp_path, capsys):
    base = ["segment", str(runs["movie"]), "--out", str(tmp_path / "b.json"), "--features",
            str(tmp_path / "f"), *TINY, "--synopsis", str(runs["synopsis"])]
    assert main([*base, "--act-checkpoint", str(runs["act"])]) == 0
    err = capsys.readouterr().err
    assert "warning: movie: the synopsis is not used: the act checkpoint's config has no " \
           "synopsis guidance (only act-sync checkpoints" in err
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["methods"]["acts"]["synopsis_guided"] is False
    assert main([*base, "--modalities", "clip"]) == 0          # no act checkpoint at all
    assert "the synopsis is not used: without --act-checkpoint" in capsys.readouterr().err
    assert main(base[:-2] + ["--act-checkpoint", str(runs["act"])]) == 0    # none given: quiet
    assert "synopsis" not in capsys.readouterr().err


# -- 7. --strict and a modality the movie lacks --------------------------------------------------------
def test_strict_failure_says_how_to_proceed(tmp_path, capsys):
    movie = tmp_path / "m.mp4"
    make_movie(movie, [1, 1], size=(160, 90), audio=False)
    out = tmp_path / "out"
    assert main(["extract", str(movie), "--out", str(out), *TINY, "--modalities", "clip,audio",
                 "--strict"]) == 2
    err = _one_error(capsys)
    assert "failed (--strict) on 1 warning: no audio stream" in err
    assert err.endswith("to go on without audio, leave it out with --modalities clip")
    assert not out.exists()
    assert main(["extract", str(movie), "--out", str(out), *TINY, "--modalities", "clip",
                 "--strict"]) == 0


# -- 8. search over tiny features, and a movie file given as a feature folder -----------------------
def test_search_warns_about_tiny_features_and_names_a_video_file(tmp_path, capsys):
    movie = tmp_path / "long.mp4"
    make_movie(movie, [2, 2], size=(160, 90), audio=False)
    out = tmp_path / "OUT"
    assert main(["extract", str(movie), "--out", str(out), *TINY, "--modalities", "clip"]) == 0
    capsys.readouterr()
    assert main(["search", "a beach", str(out)]) == 0
    got = capsys.readouterr()
    assert got.out.strip()
    warnings = [line for line in got.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "clip-tiny" in warnings[0] and "random, untrained" in warnings[0]
    assert main(["search", "a beach", str(out), str(movie)]) == 2
    err = _one_error(capsys)
    assert f"{movie} is a video file, not a feature folder" in err
    assert f"`mega-pipe extract {movie} --out OUT`" in err


# -- 9. segment's notes on what it predicted without -------------------------------------------------
def test_segment_says_it_predicted_without_a_missing_modality(runs, tmp_path, capsys):
    assert main(["segment", str(runs["movie"]), "--out", str(tmp_path / "b.json"), "--features",
                 str(tmp_path / "f"), *TINY, "--scene-checkpoint", str(runs["scene"])]) == 0
    err = capsys.readouterr().err
    assert "predicted without audio: movie has no audio stream" in err
    assert "not predicted: audio" not in err


# -- 10. an unreadable file: FFmpeg's message, no errno ----------------------------------------------
def test_unreadable_file_error_has_no_errno(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a movie" * 500)
    assert main(["extract", str(bad), "--out", str(tmp_path / "out"), *TINY]) == 2
    err = _one_error(capsys)
    assert err == f"mega-pipe: error: {bad}: not a readable media file (Invalid data found when " \
                  "processing input)"


# -- 11. and 12. summaries: singular counts; a several-movie run lists its failures ------------------
def test_summaries_count_right_and_list_failed_movies(tmp_path, capsys):
    one, two = tmp_path / "one.mp4", tmp_path / "two.mp4"
    make_movie(one, [2], size=(160, 90), audio=False)
    make_movie(two, [1.5, 1.5], size=(160, 90), audio=False)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a movie" * 500)
    out = tmp_path / "out"
    assert main(["extract", str(one), "--out", str(out), *TINY, "--modalities", "clip",
                 "--summary", str(tmp_path / "s.parquet")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("one: 1 shot, ") and lines[-1].startswith("1 movie: 1 done;")
    assert main(["segment", str(two), "--out", str(tmp_path / "b.json"), "--features", str(out),
                 *TINY, "--modalities", "clip", "--scenes", "1"]) == 0
    assert capsys.readouterr().out.startswith("two: 2 shots, 1 scene, no turning points")
    assert main(["extract", str(one), str(bad), "--out", str(out), *TINY,
                 "--modalities", "clip"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"bad: failed: {bad}: not a readable media file (Invalid data found when processing " \
           "input)" in lines
    assert lines[-1].startswith("2 movies: 1 cached, 1 failed; summary -> ")


# -- 14. every option of these commands says what it is ----------------------------------------------
def test_every_option_of_these_commands_has_help():
    def walk(parser, path=()):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + (name,))

    mine = {"extract", "segment", "demo", "export", "report", "search", "moments", "manifest"}
    bare = [(" ".join(path), action.option_strings or action.dest)
            for path, parser in walk(build_parser()) if path and path[0] in mine
            for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
            and not action.help]
    assert bare == []
    demo = next(p for path, p in walk(build_parser()) if path == ("demo",))
    assert "mega-pipe-demo" in next(a.help for a in demo._actions if "--out" in a.option_strings)


# -- 7. an act checkpoint whose shot model collapsed ----------------------------------------------
def test_segment_says_when_the_act_checkpoints_distributions_are_flat(runs, tmp_path, capsys):
    """boundaries.json records the flat fraction of the turning-point distributions, and a
    collapsed shot model (constant logits: docs/training.md, eval's `flat_posteriors`) is
    warned about instead of its near-tie argmax passing for turning points."""
    import torch

    base = ["segment", str(runs["movie"]), "--features", str(tmp_path / "f"), *TINY, "--modalities", "clip"]
    assert main([*base, "--out", str(tmp_path / "ok.json"), "--act-checkpoint", str(runs["act"])]) == 0
    assert "flat" not in capsys.readouterr().err
    assert json.loads((tmp_path / "ok.json").read_text())["methods"]["acts"]["flat_posteriors"] < 0.5

    state = torch.load(runs["act"], weights_only=True)
    for name in ("head.proj.weight", "head.proj.bias"):   # MEGA's TP head: constant logits
        state["model"][name].zero_()
    torch.save(state, tmp_path / "collapsed.pt")
    assert main([*base, "--out", str(tmp_path / "flat.json"), "--act-checkpoint", str(tmp_path / "collapsed.pt")]) == 0
    assert "warning: movie: the act checkpoint's turning-point distributions are flat" in capsys.readouterr().err
    assert json.loads((tmp_path / "flat.json").read_text())["methods"]["acts"]["flat_posteriors"] == 1.0
