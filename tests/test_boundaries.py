"""``boundaries.json`` has one home (manifests/boundaries.py): ``segment`` writes it through the
validating writer, and ``export`` and ``report`` read it through the one validating reader, so a
file one command refuses the others refuse with the same line. JSON files of every kind are read
with one error style (manifests/jsonio.py)."""
from __future__ import annotations

import json

import pytest
from mega_pipe.manifests.boundaries import read_boundaries, validate, write_boundaries
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.jsonio import read_json, read_jsonl
from mega_pipe.pipeline.cli import main


def good_doc() -> dict:
    shots = [{"index": i, "start_s": i * 2.0, "end_s": i * 2.0 + 2.0, "start_frame": i * 50,
              "end_frame": i * 50 + 50} for i in range(3)]
    return {"schema": "mega-pipe/boundaries", "version": 2,
            "movie": {"id": "m", "path": None, "duration_s": 6.0, "frames": 150,
                      "frame_rate": "25/1"},
            "shots": shots, "scenes": [{"index": 0, "first_shot": 0, "last_shot": 2,
                                         "start_s": 0.0, "end_s": 6.0, "confidence": 1.0}],
            "scene_boundary_prob": [0.1, 0.2, 1.0], "turning_points": None, "acts": None,
            "tp_posteriors": None, "missing": [], "methods": {}, "provenance": {}}


def bad(**change) -> dict:
    doc = good_doc()
    for key, value in change.items():
        if "." in key:
            outer, inner = key.split(".")
            doc[outer] = [{**doc[outer][0], inner: value}, *doc[outer][1:]]
        else:
            doc[key] = value
    return doc


BAD = {
    "boolean version": bad(version=True),
    "future version": bad(version=4),
    "other schema": bad(schema="x/y"),
    "no shots": bad(shots=[]),
    "string frame": bad(**{"shots.start_frame": "0"}),
    "float frame": bad(**{"shots.end_frame": 50.0}),
    "NaN-free times": bad(**{"shots.start_s": "0"}),
    "scene past the end": bad(scenes=[{"index": 0, "first_shot": 0, "last_shot": 3}]),
    "tp past the end": bad(turning_points=[{"index": 1, "shot": 9}]),
    "short probabilities": bad(scene_boundary_prob=[0.1]),
    "zero rate": bad(movie={"id": "m", "frame_rate": "0/1"}),
}


@pytest.mark.parametrize("name", BAD)
def test_export_and_report_refuse_the_same_files_with_the_same_line(tmp_path, capsys, name):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(BAD[name]))
    lines = []
    for argv in (["export", str(path), "--out", str(tmp_path / "x.csv")],
                 ["report", str(path), "--out", str(tmp_path / "r.html"), "--no-thumbnails"]):
        assert main(argv) == 2, (name, argv)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mega-pipe: error: "), err
        lines.append(err)
    assert lines[0] == lines[1]
    with pytest.raises(MegaPipeError) as e:
        read_boundaries(path)
    assert f"mega-pipe: error: {e.value}\n" == lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


def test_writer_refuses_what_the_reader_refuses_and_round_trips(tmp_path):
    path = tmp_path / "b.json"
    with pytest.raises(MegaPipeError, match="boundaries version True"):
        write_boundaries(path, BAD["boolean version"])
    assert not path.exists()
    doc = good_doc()
    doc["scene_boundary_prob"][0] = float("nan")          # JSON has no NaN: written as null
    write_boundaries(path, doc)
    back = read_boundaries(path)
    assert back["scene_boundary_prob"][0] is None and back["shots"] == doc["shots"]
    assert validate(back, "x") is back


def test_json_readers_say_which_file_and_line(tmp_path):
    cases = {"missing.json": None, "bad.json": "{nope", "list.json": "[1, 2]"}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    msgs = []
    for name in cases:
        with pytest.raises(MegaPipeError) as e:
            read_json(tmp_path / name, "name map", expect=dict)
        msgs.append(str(e.value))
    assert msgs[0].endswith("missing.json: no such file") and msgs[0].startswith("name map ")
    assert "bad.json: not JSON (" in msgs[1] and "line 1" in msgs[1]
    assert msgs[2].endswith("list.json: expected a JSON object, found list")
    jl = tmp_path / "m.jsonl"
    jl.write_text('{"a": 1}\n\n[2]\n')
    with pytest.raises(MegaPipeError, match=r"m\.jsonl:3: expected a JSON object per line"):
        read_jsonl(jl)
    jl.write_text('{"a": 1}\n\n{"b": 2}\n')
    assert read_jsonl(jl) == [(1, {"a": 1}), (3, {"b": 2})]
