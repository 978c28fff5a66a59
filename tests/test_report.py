"""``mega-pipe report``: a real movie through extract + segment, the report rendered in headless
Chromium (console errors, one DOM element per shot, a screenshot), PNG figures, a synthetic
2,000-shot film, and one-line errors without partial files for bad inputs. The page as an editor
uses it, read from Chromium's DOM: SMPTE timecodes (drop-frame) and frames equal to the exports',
numbering from 1 as the exports name things, every turning point on a shot, P(end) as steps,
no matrices for one shot, the exports as downloads, a 1-frame movie's thumbnail."""
from __future__ import annotations

import base64
import csv
import html as htmllib
import importlib.util
import io
import json
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, ffmpeg
from mega_pipe.manifests.boundaries import build_boundaries
from mega_pipe.pipeline import export
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.demo import SAMPLE_SUBTITLES, make_movie, write_srt
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
    assert doc["version"] == 3 and len(doc["shots"]) == len(SHOTS)
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
    ({"schema": "something/else"}, "is not a mega-pipe boundaries file"),
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
    assert re.search(r"cannot create|is a file, not a folder", error_line(capsys))
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


# ----------------------------------------------------------------- the report as an editor uses it
def texts(dom: str, pattern: str) -> list[str]:
    """The text (tags dropped, entities decoded) of each match of ``pattern``'s group 1."""
    return [" ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", m)).split())
            for m in re.findall(pattern, dom, re.S)]


def table_rows(dom: str) -> list[tuple[str, list[str]]]:
    """(class, cell texts) of every row of the acts and turning points table."""
    return [(cls, texts(row, r"<td[^>]*>(.*?)</td>"))
            for cls, row in re.findall(r'<tr class="([^"]*)" data-shot="\d+">(.*?)</tr>', dom, re.S)]


def canvas_data(dom: str, name: str):
    m = re.search(rf'<canvas id="overview"[^>]*\bdata-{name}="([^"]*)"', dom)
    assert m, f"no data-{name} on the timeline canvas"
    return json.loads(htmllib.unescape(m.group(1)))


def ntsc_doc(movie: dict, scale: int = 36) -> dict:
    """full_doc at 30000/1001 with every frame number ×36: shot 2 starts at frame 1800, where
    drop-frame timecode has skipped frames 0 and 1 of the minute."""
    doc = full_doc(movie)
    rate = Fraction(30000, 1001)
    doc["movie"]["frame_rate"] = "30000/1001"
    for s in doc["shots"]:
        s["start_frame"], s["end_frame"] = s["start_frame"] * scale, s["end_frame"] * scale
        s["start_s"], s["end_s"] = float(s["start_frame"] / rate), float(s["end_frame"] / rate)
    doc["movie"].update(frames=doc["shots"][-1]["end_frame"], duration_s=doc["shots"][-1]["end_s"])
    for seg in doc["scenes"] + doc["acts"]:
        seg["start_s"], seg["end_s"] = (doc["shots"][seg["first_shot"]]["start_s"],
                                        doc["shots"][seg["last_shot"]]["end_s"])
    for tp in doc["turning_points"]:
        tp["time_s"] = doc["shots"][tp["shot"]]["start_s"]
    return doc


@pytest.fixture(scope="module")
def ntsc_page(movie, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ntsc")
    b, html = root / "ntsc.json", root / "ntsc.html"
    b.write_text(json.dumps(ntsc_doc(movie)))
    assert main(["report", str(b), "--out", str(html), "--no-thumbnails"]) == 0
    return {"boundaries": b, "dom": rendered(html, root / "ntsc.png")["dom"]}


@pytest.fixture(scope="module")
def one_frame(tmp_path_factory) -> dict:
    """A valid 1-frame movie through `segment`: one shot, the five TPs all on it."""
    root = tmp_path_factory.mktemp("one-frame")
    path = root / "one.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=25", "-frames:v", "1",
           "-pix_fmt", "yuv420p", str(path))
    b = root / "b.json"
    assert main(["segment", str(path), "--out", str(b), "--models", "tiny", "--modalities", "clip",
                 "--features", str(root / "features"), "--no-progress"]) == 0
    return {"movie": path, "boundaries": b}


def test_smpte_timecodes_and_frame_numbers_as_in_the_exports(ntsc_page, tmp_path):
    dom, src = ntsc_page["dom"], export.load_source(ntsc_page["boundaries"])
    tc = lambda f: export.timecode(f, 30000 / 1001)      # noqa: E731
    assert "timecode 29.97 DF" in texts(dom, r'<div class="meta" id="meta">(.*?)</div>')[0]
    shots = src.doc["shots"]
    caps = texts(dom, r'<div class="cap tc">(.*?)</div></div>')
    assert caps == [f"#{i + 1} {tc(s['start_frame'])} frames {s['start_frame']}–{s['end_frame']}"
                    for i, s in enumerate(shots)]
    assert caps[1].startswith("#2 00:01:00;02 frames 1800–")          # drop-frame: ;02
    # scenes and acts: the in/out timecodes of the CSV export, its frames (end exclusive)
    for level in ("scenes", "acts"):
        out = tmp_path / f"{level}.csv"
        assert main(["export", str(ntsc_page["boundaries"]), "--out", str(out), "--level", level]) == 0
        rows = list(csv.DictReader(out.open()))
        want = [(r["name"], r["start_timecode"], r["end_timecode"],
                 f"frames {r['start_frame']}–{r['end_frame']}") for r in rows]
        if level == "scenes":
            got = [tuple(t.split(" · ")[:3]) for t in
                   texts(dom, r'<div class="scene-label">(.*?)</div>')]
            assert [(n, f"{a} – {b}", fr) for n, a, b, fr in want] == got
        else:
            got = [tuple(cells[:4]) for cls, cells in table_rows(dom) if "act" in cls.split()]
            assert want == got
    tps = [cells for cls, cells in table_rows(dom) if cls == "tp"]
    assert [c[:4] for c in tps] == [
        [f"TP{t['index']} {t['name']}", tc(shots[t["shot"]]["start_frame"]), "",
         f"frame {shots[t['shot']]['start_frame']}"] for t in src.doc["turning_points"]]
    assert tps[0][1] == "00:01:00;02"


def test_shots_scenes_and_acts_are_numbered_from_1_as_in_the_exports(ntsc_page):
    dom, src = ntsc_page["dom"], export.load_source(ntsc_page["boundaries"])
    caps = texts(dom, r'<div class="cap tc">(.*?)<div')
    assert [c.split()[0] for c in caps] == [f"#{i}" for i in range(1, len(SHOTS) + 1)]
    labels = [t.split(" · ")[0] for t in texts(dom, r'<div class="scene-label">(.*?)</div>')]
    assert labels == [s.name for s in export.segments(src, "scenes")] == \
        ["Scene 1", "Scene 2", "Scene 3", "Scene 4"]
    acts = [cells[0] for cls, cells in table_rows(dom) if "act" in cls.split()]
    assert acts == [s.name for s in export.segments(src, "acts")]
    assert acts[0] == "Act 1: Setup"
    badges = texts(dom, r'<span class="badge act">(.*?)</span>')
    assert badges and set(badges) <= set(acts)
    body = " ".join(texts(dom, r"<body[^>]*>(.*?)<script"))
    assert not re.search(r"#0\b|\b[Ss]cene 0\b|\b[Ss]hot 0\b", body)


def test_coinciding_turning_points_get_every_badge_and_separate_labels(movie, tmp_path):
    # the first 3 shots with act posteriors peaking on shots 1 and 2: with fewer than five shots
    # the turning points may share shots (boundaries.ordered_turning_points), acts between them empty
    manifest = json.loads((movie["features"] / "manifest.json").read_text())
    shots = {k: [s[k] for s in json.loads(movie["boundaries"].read_text())["shots"][:3]]
             for k in ("start_s", "end_s", "start_frame", "end_frame")}
    post = np.full((5, 3), 0.01)
    post[:2, 1] = post[2:, 2] = 1.0
    doc = build_boundaries(manifest, movie["features"], shots, None,
                           {"posteriors": post / post.sum(1, keepdims=True)}, [], 0.5)
    b, html = tmp_path / "few.json", tmp_path / "few.html"
    b.write_text(json.dumps(doc))
    assert main(["report", str(b), "--out", str(html), "--no-thumbnails"]) == 0
    assert [t["shot"] for t in doc["turning_points"]] == [1, 1, 2, 2, 2]
    dom = rendered(html, tmp_path / "few.png")["dom"]
    assert texts(dom, r'<div class="badges">(.*?)</div>') == ["TP1 TP2", "TP3 TP4 TP5"]
    boxes = canvas_data(dom, "tp-labels")
    assert [(b["text"], b["tps"]) for b in boxes] == [("TP1+2", [1, 2]), ("TP3+4+5", [3, 4, 5])]
    empty = [cells[0] for cls, cells in table_rows(dom) if cls == "act empty"]
    assert empty == ["Act 2: New Situation", "Act 4: Complications and Higher Stakes",
                     "Act 5: Final Push"]
    # a long film with its TPs on neighbouring shots, less than a label apart on the timeline
    boundaries, _ = bench.make_long_inputs(tmp_path / "long", shots=300, tp_positions=(0.5,) * 5)
    shots = [t["shot"] for t in json.loads(boundaries.read_text())["turning_points"]]
    assert shots == list(range(shots[0], shots[0] + 5))
    html = tmp_path / "long.html"
    assert main(["report", str(boundaries), "--out", str(html), "--no-thumbnails"]) == 0
    boxes = canvas_data(rendered(html, tmp_path / "long.png")["dom"], "tp-labels")
    assert sorted(i for b in boxes for i in b["tps"]) == [1, 2, 3, 4, 5]
    assert boxes[1]["x"] - boxes[0]["x"] < boxes[0]["w"]         # they would overlap in a row
    for k, a in enumerate(boxes):
        for b in boxes[k + 1:]:
            apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                     or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
            assert apart, (a, b)


def test_scene_end_probability_is_drawn_as_steps_at_the_cuts(movie, tmp_path):
    doc = full_doc(movie)
    b, html = tmp_path / "full.json", tmp_path / "full.html"
    b.write_text(json.dumps(doc))
    assert main(["report", str(b), "--out", str(html), "--no-thumbnails"]) == 0
    steps = canvas_data(rendered(html)["dom"], "prob-steps")
    data = page_data(html)
    want = []
    for (a, e), p in zip(data["shots"], doc["scene_boundary_prob"]):
        want += [[a, p], [e, p]]            # held across the shot; the next shot's jump at its cut
    assert steps == want
    assert all(steps[k][0] == steps[k + 1][0] for k in range(1, len(steps) - 1, 2))   # vertical


def test_a_one_shot_movie_shows_no_similarity_matrices(one_frame, tmp_path):
    html = tmp_path / "one.html"
    assert main(["report", str(one_frame["boundaries"]), "--out", str(html), "--no-thumbnails"]) == 0
    data = page_data(html)
    assert len(data["shots"]) == 1 and data["similarity"] == []
    dom = rendered(html)["dom"]
    assert 'class="matrix"' not in dom
    assert "1 shot: no similarity matrices" in dom


def test_the_page_offers_the_exports_as_downloads(movie, tmp_path):
    b, html = tmp_path / "full.json", tmp_path / "full.html"
    b.write_text(json.dumps(full_doc(movie)))
    assert main(["report", str(b), "--out", str(html), "--no-thumbnails"]) == 0
    text = html.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', text) and "http" not in text
    dom = rendered(html)["dom"]
    links = {htmllib.unescape(name): htmllib.unescape(href) for href, name in
             re.findall(r'<a href="(data:[^"]*)" download="([^"]*)"', dom)}
    want = {f"film-{level}.{ext}": (level, fmt) for level in ("shots", "scenes", "acts")
            for fmt, ext in (("csv", "csv"), ("edl", "edl"), ("webvtt", "vtt"))}
    assert sorted(links) == sorted(want)
    for name, (level, fmt) in want.items():
        out = tmp_path / "export" / name
        assert main(["export", str(b), "--out", str(out), "--level", level, "--format", fmt]) == 0
        head, _, payload = links[name].partition(",")
        assert head.endswith(";base64"), head
        assert base64.b64decode(payload) == out.read_bytes(), name


def test_out_must_be_html_and_matrix_size_not_negative(movie, tmp_path, capsys):
    b = str(movie["boundaries"])
    assert main(["report", b, "--out", str(tmp_path / "sub" / "r.png")]) == 2
    line = error_line(capsys)
    assert "r.png" in line and ".html" in line
    # checked before any work: a missing boundaries file is not even read
    assert main(["report", str(tmp_path / "nope.json"), "--out", str(tmp_path / "r.html"),
                 "--matrix-size", "-5"]) == 2
    assert "--matrix-size -5" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []
    assert main(["report", b, "--out", str(tmp_path / "r.HTM"), "--no-thumbnails",
                 "--matrix-size", "0"]) == 0


def test_a_one_frame_movie_gets_its_thumbnail(one_frame, tmp_path):
    html = tmp_path / "one.html"
    assert main(["report", str(one_frame["boundaries"]), "--out", str(html)]) == 0
    thumb = Image.open(io.BytesIO(base64.b64decode(page_data(html)["thumbnails"][0])))
    assert thumb.format == "JPEG" and thumb.size == (160, 90)
    ffmpeg("-i", str(one_frame["movie"]), "-frames:v", "1", str(tmp_path / "frame.png"))
    frame = np.asarray(Image.open(tmp_path / "frame.png").convert("RGB"), float)
    assert np.abs(np.asarray(thumb.convert("RGB"), float) - frame).mean() < 12   # that frame
