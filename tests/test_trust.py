"""What a new user must be able to trust: options reach the stage they name, no output is
overwritten silently, a movie folder is locked while written, and a failed or killed run leaves
nothing that looks like a result. Real FFmpeg decoding, real processes, real OS locks."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTVIDEO, need
from mega_pipe.manifests.atomic import exclusive_lock
from mega_pipe.pipeline.cli import build_parser, extract_config, main
from mega_pipe.pipeline.demo import make_movie

TINY = ["--models", "tiny", "--no-progress", "--modalities", "clip"]


def _subparsers(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, path + (name,))


def test_every_option_is_stored_under_its_own_name():
    """An option's value lands under the option's own name, so options of different stages
    (the detector's --threshold, segment's --scene-threshold) can never alias."""
    checked = 0
    for path, parser in _subparsers(build_parser()):
        dests = {}
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction,
                                                                argparse._VersionAction)):
                continue
            long = max(action.option_strings, key=len)
            assert action.dest == long.lstrip("-").replace("-", "_"), (path, long, action.dest)
            assert action.dest not in dests, (path, long, dests.get(action.dest))
            dests[action.dest] = long
            checked += 1
    assert checked > 50


def test_segment_thresholds_reach_their_own_stage(capsys):
    args = build_parser().parse_args(["segment", "m.mp4", "--out", "b.json",
                                      "--scene-threshold", "0.3", "--shot-threshold", "3.0"])
    assert args.scene_threshold == 0.3 and extract_config(args).detector.threshold == 3.0
    args = build_parser().parse_args(["segment", "m.mp4", "--out", "b.json"])
    assert extract_config(args).detector.threshold is None
    assert "deprecated" not in capsys.readouterr().err


def test_old_threshold_option_still_works_with_a_deprecation_warning(capsys):
    from mega_pipe.pipeline.cli import configure_logging

    configure_logging()
    for command in (["segment", "m.mp4", "--out", "b.json"], ["extract", "m.mp4"]):
        args = build_parser().parse_args([*command, "--threshold", "2.5"])
        assert extract_config(args).detector.threshold == 2.5
        err = capsys.readouterr().err
        assert "--threshold is deprecated: use --shot-threshold" in err and err.count("\n") == 1


def test_extraction_options_are_one_group_defined_once():
    """extract, segment and demo list the same extraction options, in one argument group."""
    groups = {}
    for path, parser in _subparsers(build_parser()):
        if path in (("extract",), ("segment",), ("demo",)):
            [group] = [g for g in parser._action_groups if g.title == "extraction options"]
            groups[path] = [max(a.option_strings, key=len) for a in group._group_actions]
    assert len(groups) == 3 and len({tuple(v) for v in groups.values()}) == 1
    assert "--shot-threshold" in groups[("extract",)] and len(groups[("extract",)]) >= 18


def test_segment_reuses_features_extracted_with_the_same_options(tmp_path, capsys):
    movie = tmp_path / "m.mp4"
    make_movie(movie, [2, 2], size=(160, 90), audio=False)
    out = tmp_path / "out"
    assert main(["extract", str(movie), "--out", str(out), *TINY]) == 0
    before = (out / "m" / "shots.parquet").stat().st_mtime_ns
    assert main(["segment", str(movie), "--features", str(out), "--out", str(tmp_path / "b.json"),
                 "--scene-threshold", "0.9", *TINY]) == 0
    manifest = json.loads((out / "m" / "manifest.json").read_text())
    assert manifest["config"]["detector"]["threshold"] is None
    assert (out / "m" / "shots.parquet").stat().st_mtime_ns == before     # not rewritten


def test_segment_checks_its_output_and_checkpoints_before_work(tmp_path, capsys):
    video = str(need(TESTVIDEO))
    assert main(["segment", video, "--out", str(tmp_path), *TINY]) == 2
    assert "is a directory" in capsys.readouterr().err
    fake = tmp_path / "fake.pt"
    fake.write_text('{"not": "a checkpoint"}')
    assert main(["segment", video, "--out", str(tmp_path / "b.json"),
                 "--scene-checkpoint", str(fake), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a mega-pipe checkpoint" in err
    assert "weights_only" not in err
    assert not (tmp_path / "out").exists()        # nothing was extracted


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("mega-pipe ")


def test_same_stem_inputs_are_refused_before_any_work(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(need(TESTVIDEO), tmp_path / name / "movie.mp4")
    out = tmp_path / "out"
    assert main(["extract", str(tmp_path / "a/movie.mp4"), str(tmp_path / "b/movie.mp4"),
                 "--out", str(out), *TINY]) == 2
    assert "would share the output folder" in capsys.readouterr().err
    assert not out.exists()


def test_another_movie_never_overwrites_a_folder(tmp_path, capsys):
    a, b = tmp_path / "a" / "m.mp4", tmp_path / "b" / "m.mp4"
    a.parent.mkdir()
    b.parent.mkdir()
    make_movie(a, [1, 1], size=(160, 90), audio=False)
    make_movie(b, [2], size=(160, 90), audio=False)
    out = tmp_path / "out"
    assert main(["extract", str(a), "--out", str(out), *TINY]) == 0
    manifest = (out / "m" / "manifest.json").read_text()
    assert main(["extract", str(b), "--out", str(out), *TINY]) == 2
    assert "holds the features of another movie" in capsys.readouterr().err
    assert (out / "m" / "manifest.json").read_text() == manifest
    assert main(["extract", str(b), "--id", "m2", "--out", str(out), *TINY]) == 0


def test_failed_run_leaves_no_output_folder(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a movie")
    out = tmp_path / "out"
    assert main(["extract", str(bad), "--out", str(out), *TINY]) == 2
    assert capsys.readouterr().err.startswith("mega-pipe: error: ")
    assert not out.exists()


def _hold_lock(path: Path) -> subprocess.Popen:
    code = ("import sys, time; from mega_pipe.manifests.atomic import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1], 'x'):\n"
            "    print('locked', flush=True); time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_folder_lock_refuses_a_second_writer_and_dies_with_its_holder(tmp_path, capsys):
    movie = tmp_path / "m.mp4"
    make_movie(movie, [1, 1], size=(160, 90), audio=False)
    out = tmp_path / "out"
    holder = _hold_lock(out / ".m.lock")
    try:
        assert main(["extract", str(movie), "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err
        assert f"is being written by another mega-pipe run (pid {holder.pid})" in err
        assert not (out / "m").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["extract", str(movie), "--out", str(out), *TINY]) == 0   # released by the kill
    assert sorted(p.name for p in out.iterdir()) == ["m"]                    # lock file removed
    # The lock is exclusive within one process too (each open() is its own lock owner).
    with exclusive_lock(out / ".x.lock", "x"):
        with pytest.raises(Exception, match="another mega-pipe run"):
            with exclusive_lock(out / ".x.lock", "x"):
                pass


def test_two_concurrent_extracts_one_wins_the_folder_is_whole(tmp_path):
    movie = tmp_path / "m.mp4"
    make_movie(movie, [2, 2, 2], size=(160, 90), audio=False)
    out = tmp_path / "out"
    runs = [subprocess.Popen([sys.executable, "-m", "mega_pipe.pipeline.cli", "extract", str(movie),
                              "--out", str(out), "--detector", det, *TINY],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for det in ("adaptive", "content")]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    assert any("is being written by another mega-pipe run" in err for _, err in results)
    manifest = json.loads((out / "m" / "manifest.json").read_text())
    winner = "adaptive" if runs[0].returncode == 0 else "content"
    assert manifest["config"]["detector"]["detector"] == winner


def test_killed_run_leaves_no_movie_folder_and_the_next_run_cleans_up(tmp_path):
    movie = tmp_path / "m.mp4"
    make_movie(movie, [20, 20], size=(320, 180), audio=False)
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "mega_pipe.pipeline.cli", "extract", str(movie),
                          "--out", str(out), "--models", "tiny", "--no-progress"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out / ".m.partial").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "m").exists()            # nothing that looks like a movie's folder
    assert main(["extract", str(movie), "--out", str(out), *TINY]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["m"]
    assert [f.name for f in os.scandir(out / "m" / "samples")] == ["clip.parquet"]


@pytest.mark.parametrize("shots", [3, 6])
def test_acts_are_written_exactly_when_not_reported_missing(tmp_path, capsys, shots):
    """Six acts need six shots: with fewer, turning points, acts and their posteriors are null
    and `missing`, stderr and stdout say so (they used to say so while six acts were written);
    with six, all are written and nothing is reported missing."""
    movie = tmp_path / "m.mp4"
    make_movie(movie, [1.5] * shots, size=(160, 90), audio=False)
    b = tmp_path / "b.json"
    assert main(["segment", str(movie), "--out", str(b), "--features", str(tmp_path / "f"),
                 *TINY]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(b.read_text())
    assert len(doc["shots"]) == shots
    acts_missing = [m for m in doc["missing"] if m.startswith("acts:")]
    if shots < 6:
        assert doc["turning_points"] is None and doc["acts"] is None
        assert doc["tp_posteriors"] is None and doc["methods"]["acts"] is None
        assert acts_missing == ["acts: only 3 shots; the five turning points and six acts need "
                                "at least 6"]
        assert f"not predicted: {acts_missing[0]}" in err and "no turning points" in out
        assert main(["export", str(b), "--out", str(tmp_path / "a.csv"), "--level", "acts"]) == 2
        assert not (tmp_path / "a.csv").exists()
    else:
        assert len(doc["turning_points"]) == 5 and len(doc["acts"]) == 6
        assert not acts_missing and "not predicted: acts" not in err


def test_outputs_get_the_usual_permissions_not_owner_only(tmp_path):
    """Every file a run writes goes through a temporary sibling (mkstemp makes it 0600); the
    renamed file must have the permissions open() would give it, so a team's shared folder can
    read it: umask 027 → 0640 for the features, the manifest and a training manifest."""
    movie = tmp_path / "m.mp4"
    make_movie(movie, [2, 2], size=(160, 90), audio=False)
    env = {**os.environ}
    for argv in (["extract", str(movie), "--out", str(tmp_path / "out"), *TINY],
                 ["manifest", "synth", str(tmp_path / "synth"), "--movies", "3"]):
        p = subprocess.run([sys.executable, "-m", "mega_pipe.pipeline.cli", *argv], env=env,
                           capture_output=True, text=True, preexec_fn=lambda: os.umask(0o027))
        assert p.returncode == 0, p.stderr
    written = [f for f in [*(tmp_path / "out").rglob("*"), *(tmp_path / "synth").rglob("*")] if f.is_file()]
    assert {"shots.parquet", "clip.parquet", "manifest.json", "manifest.jsonl"} <= {f.name for f in written}
    assert {oct(f.stat().st_mode & 0o777) for f in written} == {oct(0o640)}
