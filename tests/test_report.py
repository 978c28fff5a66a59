"""``mega-pipe report``: a real movie through extract + segment, the report rendered in headless
Chromium (console errors, one DOM element per shot, a screenshot), PNG figures, a synthetic
2,000-shot film, and one-line errors without partial files for bad inputs."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.demo import SAMPLE_SUBTITLES, make_movie, write_srt
from mega_pipe.pipeline.segment import build_boundaries
from PIL import Image

SHOTS = [2, 2, 1.5, 2.5, 1.5, 2, 2]          # shot 3 is the plain colour 0x3060a0 (demo.SOURCES)

_spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "bench_report.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def need_chromium() -> None:
    if not (shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")):
        pytest.fail("chromium missing: apt-get install -y chromium (.ci/run installs it)")


def page_data(html: Path) -> dict:
    text = html.read_text(encoding="utf-8")
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def rendered(html: Path, screenshot: Path | None = None) -> dict:
    need_chromium()
    r = bench.chromium_render(html, screenshot, timeout=600)
    assert r["console_errors"] == [], r["console_errors"]
    assert r["status"] == "ok", r
    return r


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("mega-pipe: error: "), err
    return err[-1]


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    path = root / "film.mp4"
    cuts = make_movie(path, SHOTS, size=(320, 180))
    write_srt(root / "film.srt")
    out = root / "b.json"
    assert main(["segment", str(path), "--out", str(out), "--models", "tiny", "--features",
                 str(root / "features"), "--no-progress"]) == 0
    return {"root": root, "movie": path, "cuts": cuts, "boundaries": out,
            "features": root / "features" / "film"}


def test_report_of_segment_output(movie, tmp_path, capsys):
    doc = json.loads(movie["boundaries"].read_text())
    assert doc["version"] == 2 and len(doc["shots"]) == len(SHOTS)
    assert doc["methods"]["scenes"]["name"] == "shot-coherence" and doc["scenes"]   # no checkpoint
    html = tmp_path / "out" / "report.html"
    assert main(["report", str(movie["boundaries"]), "--out", str(html)]) == 0
    assert "7 shots" in capsys.readouterr().out
    assert sorted(p.name for p in html.parent.iterdir()) == ["report.html"]   # no temporaries

    text = html.read_text(encoding="utf-8")
    # self-contained: nothing fetched from anywhere (the movie is added by JS on click only)
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', text)
    assert "http://" not in text and "https://" not in text and "<link" not in text

    data = page_data(html)
    assert [s["end_frame"] for s in doc["shots"][:-1]] == movie["cuts"]
    assert len(data["thumbnails"]) == len(SHOTS) and all(data["thumbnails"])
    thumbs = [Image.open(io.BytesIO(base64.b64decode(t))) for t in data["thumbnails"]]
    assert all(t.format == "JPEG" and t.size == (160, 90) for t in thumbs)
    # seeking lands in the right shot: shot 3 is the plain colour 0x3060a0
    blue = np.asarray(thumbs[3].convert("RGB"), float).reshape(-1, 3).mean(0)
    assert np.abs(blue - (0x30, 0x60, 0xA0)).max() < 12, blue
    assert np.asarray(thumbs[0].convert("L"), float).std() > 20        # testsrc2: not flat
    # subtitle cues on the shots they overlap
    starts = np.cumsum([0] + SHOTS[:-1])
    ends = starts + SHOTS
    want = [[k for k, (a, b, _) in enumerate(SAMPLE_SUBTITLES) if min(e, b) - max(s, a) > 0]
            for s, e in zip(starts, ends)]
    assert data["shot_cues"] == want
    assert [c[2] for c in data["cues"]][1] == "Somewhere the sea can't reach."
    mods = [s["modality"] for s in data["similarity"]]
    assert "clip" in mods and "subtitle" in mods
    sim = data["similarity"][0]
    assert sim["triangle"] and len(base64.b64decode(sim["b64"])) == 7 * 8 // 2
    rel = Path(os.path.relpath(movie["movie"], html.parent)).as_posix()
    assert data["sources"] == [rel, movie["movie"].absolute().as_uri()]

    shot = tmp_path / "report.png"
    r = rendered(html, shot)
    assert r["shots"] == len(SHOTS) and r["shot_elements"] == len(SHOTS)
    img = Image.open(shot)
    assert img.size[0] >= 800 and shot.stat().st_size > 20_000
    assert np.asarray(img.convert("L"), float).std() > 10               # not a blank page


def full_doc(movie: dict) -> dict:
    """The segment output with scenes, probabilities, TPs, acts and a sync matrix added (as the
    scene and act models would write them)."""
    manifest = json.loads((movie["features"] / "manifest.json").read_text())
    doc = json.loads(movie["boundaries"].read_text())
    shots = {k: [s[k] for s in doc["shots"]] for k in ("start_s", "end_s", "start_frame", "end_frame")}
    prob = np.array([0.1, 0.8, 0.2, 0.9, 0.3, 0.7, 0.5])
    post = np.full((5, 7), 0.02)
    for n, s in enumerate((1, 2, 3, 4, 5)):
        post[n, s] = 0.88
    post /= post.sum(1, keepdims=True)
    full = build_boundaries(manifest, movie["features"], shots, {"prob": prob}, {"posteriors": post},
                            [], 0.5)
    full["provenance"] = {**doc["provenance"], "scene_checkpoint": "s.pt", "act_checkpoint": "a.pt"}
    full["sync_matrix"] = np.round(np.random.default_rng(0).random((4, 7)), 3).tolist()
    return full


def test_report_with_scenes_turning_points_acts_and_pngs(movie, tmp_path):
    doc = full_doc(movie)
    b = tmp_path / "full.json"
    b.write_text(json.dumps(doc))
    html, png = tmp_path / "full.html", tmp_path / "png"
    assert main(["report", str(b), "--out", str(html), "--png", str(png)]) == 0
    data = page_data(html)
    assert len(data["scenes"]) == len(doc["scenes"]) == 4
    assert [t["name"] for t in data["turning_points"]][0] == "Opportunity"
    assert [a["name"] for a in data["acts"]][-1] == "Aftermath"
    assert data["sync"]["rows"] == 4 and data["sync"]["cols"] == 7
    r = rendered(html, tmp_path / "full.png")
    assert r["shot_elements"] == len(SHOTS)
    import matplotlib.image

    names = sorted(p.name for p in png.iterdir())
    want = ["scene_probability.png", "sync_matrix.png", "timeline.png"] + \
        [f"similarity_{s['modality']}.png" for s in data["similarity"]]
    assert names == sorted(want)
    for p in png.iterdir():
        arr = matplotlib.image.imread(p)
        assert arr.shape[0] > 100 and arr.shape[1] > 300 and arr.std() > 0.01, p
        Image.open(p).verify()


def test_report_from_the_feature_folder_alone(movie, tmp_path):
    html = tmp_path / "f.html"
    assert main(["report", "--features", str(movie["features"]), "--out", str(html),
                 "--no-thumbnails"]) == 0
    data = page_data(html)
    assert len(data["shots"]) == len(SHOTS) and data["thumbnails"] is None and data["similarity"]
    assert rendered(html)["shot_elements"] == len(SHOTS)


def test_a_two_thousand_shot_film_renders(tmp_path):
    boundaries, _ = bench.make_long_inputs(tmp_path, shots=2000)
    n = len(json.loads(boundaries.read_text())["shots"])
    assert 1800 <= n <= 2300
    html = tmp_path / "long.html"
    assert main(["report", str(boundaries), "--out", str(html), "--no-thumbnails"]) == 0
    assert html.stat().st_size < 20e6
    data = page_data(html)
    assert data["matrix_bin"] == 2 and data["similarity"][0]["rows"] == (n + 1) // 2
    r = rendered(html)          # completes: the timings are measured in bench/bench_report.py
    assert r["shots"] == n and r["shot_elements"] == n


def test_the_console_error_check_catches_errors(tmp_path):
    """The harness itself: an uncaught exception shows up in the collected console lines."""
    need_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>throw new Error('boom')</script></body></html>")
    r = bench.chromium_render(bad)
    assert any("boom" in line for line in r["console_errors"]), r


@pytest.mark.parametrize("change, message", [
    ({"schema": "something/else"}, "is not a boundaries file"),
    ({"version": 99}, "boundaries version 99"),
])
def test_foreign_boundaries_are_refused(movie, tmp_path, capsys, change, message):
    doc = {**json.loads(movie["boundaries"].read_text()), **change}
    b = tmp_path / "b.json"
    b.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["report", str(b), "--out", str(out / "r.html"), "--no-thumbnails"]) == 2
    assert message in error_line(capsys)
    assert not out.exists() or not any(out.iterdir())


def test_missing_movie_needs_no_thumbnails(movie, tmp_path, capsys):
    doc = json.loads(movie["boundaries"].read_text())
    doc["movie"]["path"] = str(tmp_path / "gone.mp4")
    b = tmp_path / "b.json"
    b.write_text(json.dumps(doc))
    html = tmp_path / "r.html"
    assert main(["report", str(b), "--out", str(html)]) == 2
    line = error_line(capsys)
    assert "gone.mp4 not found" in line and "--no-thumbnails" in line
    assert not html.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]
    assert main(["report", str(b), "--out", str(html), "--no-thumbnails"]) == 0
    assert html.exists()


def test_unwritable_outputs_fail_before_work(movie, tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    b = str(movie["boundaries"])
    assert main(["report", b, "--out", str(tmp_path)]) == 2
    assert "is a directory" in error_line(capsys)
    assert main(["report", b, "--out", str(blocker / "r.html")]) == 2
    assert "cannot create" in error_line(capsys)
    assert main(["report", b, "--out", str(tmp_path / "r.html"), "--png", str(blocker)]) == 2
    assert "--png" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_other_bad_inputs(movie, tmp_path, capsys):
    out = str(tmp_path / "r.html")
    assert main(["report", "--out", out]) == 2
    assert "boundaries.json and/or --features" in error_line(capsys)
    assert main(["report", str(tmp_path / "nope.json"), "--out", out]) == 2
    assert "no such file" in error_line(capsys)
    (tmp_path / "junk.json").write_text("{not json")
    assert main(["report", str(tmp_path / "junk.json"), "--out", out]) == 2
    assert "not JSON" in error_line(capsys)
    # a feature folder of another movie (other shot count)
    doc = json.loads(movie["boundaries"].read_text())
    doc["shots"] = doc["shots"][:3]
    doc.update(scenes=None, scene_boundary_prob=None, turning_points=None, acts=None,
               tp_posteriors=None)       # only the shot count disagrees
    (tmp_path / "b.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path / "b.json"), "--out", out, "--no-thumbnails"]) == 2
    assert "has 7 shots but" in error_line(capsys)
    assert main(["report", str(movie["boundaries"]), "--out", out, "--features", str(tmp_path)]) == 2
    assert "not a complete feature folder" in error_line(capsys)
    assert not (tmp_path / "r.html").exists()
