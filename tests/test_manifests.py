"""Training manifests: schema validation against real feature folders (Parquet written through
the contract module), and the MovieNet-318 and TRIPOD converters on small realistic fixtures."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mega_pipe.manifests import movienet, tripod
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.features import FeatureFolder, shots_table, synopsis_table
from mega_pipe.manifests.schema import MovieEntry, read_manifest, write_manifest
from mega_pipe.pipeline.cli import main


def make_features(folder: Path, end_s: list[float], sentences: list[str] | None = None,
                  complete: bool = True) -> Path:
    """A real extract-contract folder: shots.parquet (ends at ``end_s``), optional
    synopsis.parquet, and manifest.json unless ``complete`` is False."""
    starts = [0.0] + end_s[:-1]
    shots = [SimpleNamespace(index=i, start_frame=round(s * 25), end_frame=round(e * 25),
                             start_s=s, end_s=e) for i, (s, e) in enumerate(zip(starts, end_s))]
    n = len(shots)
    out = FeatureFolder(folder)
    out.write_shots(shots_table(folder.name, shots, {"clip": (np.ones((n, 4), np.float32),
                                                              np.ones(n, np.int32))},
                                {"clip": {"dim": 4}}))
    if sentences is not None:
        out.write_synopsis(synopsis_table(folder.name, sentences,
                                          np.zeros((len(sentences), 4), np.float32), {"dim": 4}))
    if complete:
        out.write_manifest({"contract": 1, "movie_id": folder.name})
    return folder


# ----------------------------------------------------------------------------- schema

def test_round_trip_with_relative_paths(tmp_path):
    feats = make_features(tmp_path / "feats" / "m1", [1.0, 2.5, 4.0, 6.0],
                          ["One.", "Two.", "Three.", "Four.", "Five.", "Six."])
    entry = MovieEntry("m1", feats, "train", scene_labels=[0, 1, -1, None],
                       tp_sentences=[[0], [1, 2], [3], [4], [5]],
                       tp_shots=[[0], [1], [1, 2], [2], [3]])
    manifest = tmp_path / "data" / "manifest.jsonl"
    write_manifest(manifest, [entry])
    line = json.loads(manifest.read_text())
    assert line["features"] == "../feats/m1"
    assert line["tp_sentences"] == [0, [1, 2], 3, 4, 5]  # one-sentence TPs written as plain ints
    [back] = read_manifest(manifest)
    assert back == MovieEntry("m1", feats.absolute(), "train", [0, 1, -1, None],
                              [[0], [1, 2], [3], [4], [5]], [[0], [1], [1, 2], [2], [3]])


def test_label_fields_are_optional_and_tp_lists_normalised(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        '{"movie_id": "a", "features": "/nowhere/a", "split": "test"}\n\n'
        '{"movie_id": "b", "features": "b", "split": "val", "tp_sentences": [4, [9, 2, 9], [], 7, 8]}\n')
    a, b = read_manifest(manifest, check_features=False)
    assert a.scene_labels is a.tp_sentences is a.tp_shots is None
    assert a.features == Path("/nowhere/a")
    assert b.features == tmp_path / "b"
    assert b.tp_sentences == [[4], [2, 9], [], [7], [8]]


GOOD = '{"movie_id": "ok", "features": "x", "split": "train"}'


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"movie_id": "m", "features": "x", "split": "dev"}', "'split' is 'dev'"),
    ('{"movie_id": "", "features": "x", "split": "train"}', "'movie_id'"),
    ('{"movie_id": "m", "split": "train"}', "'features'"),
    ('{"movie_id": "m", "features": "x", "split": "train", "scene_label": [0]}',
     "unknown field.*scene_label"),
    ('{"movie_id": "m", "features": "x", "split": "train", "scene_labels": [0, 2]}',
     "'scene_labels' entry 1 is 2"),
    ('{"movie_id": "m", "features": "x", "split": "train", "scene_labels": [0, true]}',
     "entry 1 is True"),
    ('{"movie_id": "m", "features": "x", "split": "train", "tp_sentences": [1, 2, 3, 4]}',
     "5 entries"),
    ('{"movie_id": "m", "features": "x", "split": "train", "tp_sentences": [1, 2, 3, 4, -5]}',
     "TP5"),
    ('{"movie_id": "m", "features": "x", "split": "train", "tp_shots": [1, [2], [3], [4], [5]]}',
     "'tp_shots' TP1"),
    (GOOD, "movie_id 'ok' already on line 1"),
])
def test_malformed_lines_report_file_and_line(tmp_path, line, message):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(GOOD + "\n" + line + "\n")
    with pytest.raises(MegaPipeError, match=rf"manifest.jsonl:2: .*{message}"):
        read_manifest(manifest, check_features=False)


@pytest.mark.parametrize("fields, message", [
    ({"features": "missing"}, "does not exist"),
    ({"features": "incomplete"}, "no manifest.json"),
    ({"scene_labels": [0, 1, 0]}, "3 entries but .*shots.parquet has 4 shots"),
    ({"tp_shots": [[0], [1], [2], [3], [4]]}, "'tp_shots' TP5 index 4 out of range"),
    ({"features": "no_synopsis", "tp_sentences": [0, 0, 0, 0, 0]}, "no synopsis.parquet"),
    ({"tp_sentences": [0, 1, [2, 3], 1, 0]}, "'tp_sentences' TP3 index 3 out of range.*3 sentences"),
    ({"shot_scenes": [0, 0, 1]}, "'shot_scenes' has 3 entries but .*shots.parquet has 4 shots"),
])
def test_check_features(tmp_path, fields, message):
    make_features(tmp_path / "m", [1.0, 2.0, 3.0, 4.0], ["A.", "B.", "C."])
    make_features(tmp_path / "incomplete", [1.0, 2.0, 3.0, 4.0], complete=False)
    make_features(tmp_path / "no_synopsis", [1.0, 2.0, 3.0, 4.0])
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"movie_id": "m", "features": "m", "split": "train", **fields}))
    with pytest.raises(MegaPipeError, match=rf"manifest.jsonl:1: .*{message}"):
        read_manifest(manifest)
    assert read_manifest(manifest, check_features=False)[0].movie_id == "m"


def test_shot_scenes_round_trip_and_validation(tmp_path):
    feats = make_features(tmp_path / "m", [1.0, 2.0, 3.0, 4.0])
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [MovieEntry("m", feats, "test", shot_scenes=[0, 0, 1, 3])])
    assert json.loads(manifest.read_text())["shot_scenes"] == [0, 0, 1, 3]
    assert read_manifest(manifest)[0].shot_scenes == [0, 0, 1, 3]
    for bad in ([0, -1, 1, 1], [0, 1.0, 1, 1], [], [0, True, 1, 1], "0011"):
        manifest.write_text(json.dumps({"movie_id": "m", "features": "m", "split": "test", "shot_scenes": bad}))
        with pytest.raises(MegaPipeError, match="manifest.jsonl:1: 'shot_scenes' must be"):
            read_manifest(manifest)


def test_valid_folder_passes_and_write_rejects_bad_entries(tmp_path):
    feats = make_features(tmp_path / "m", [1.0, 2.0, 3.0], ["A.", "B."])
    manifest = tmp_path / "manifest.jsonl"
    good = MovieEntry("m", feats, "test", [0, 1, None], [0, 1, [0, 1], 1, 1], [[0], [1], [2], [], [2]])
    write_manifest(manifest, [good])
    assert read_manifest(manifest)[0].tp_sentences == [[0], [1], [0, 1], [1], [1]]
    with pytest.raises(MegaPipeError, match="'m'.*'split'"):
        write_manifest(manifest, [MovieEntry("m", feats, "training")])
    with pytest.raises(MegaPipeError, match="duplicate"):
        write_manifest(manifest, [good, good])
    assert read_manifest(manifest)[0] == MovieEntry(
        "m", feats, "test", [0, 1, None], [[0], [1], [0, 1], [1], [1]], [[0], [1], [2], [], [2]])
    with pytest.raises(MegaPipeError, match="nope.jsonl: no such file"):
        read_manifest(tmp_path / "nope.jsonl")


# ----------------------------------------------------------------------------- MovieNet

MN_LABELS = {0: 1, 1: -1, 2: 1, 3: 0, 4: 0, 5: -1, 6: 0, 7: 1, 8: 0}  # shot 9 (last) unlabelled


def _movienet_fixture(root: Path) -> dict[str, Path]:
    """label318 / shot_movie318 / split318.json for 5 movies of 10 shots of 2 s (48 frames at
    24 fps, end frame inclusive), plus feature folders."""
    labels_dir, shots_dir, features = root / "label318", root / "shot_movie318", root / "features"
    labels_dir.mkdir()
    shots_dir.mkdir()
    ids = [f"tt000000{i}" for i in range(1, 6)]
    for imdb in ids:
        (labels_dir / f"{imdb}.txt").write_text(
            "".join(f"{k:04d} {v}\n" for k, v in MN_LABELS.items()))
        (shots_dir / f"{imdb}.txt").write_text(
            "".join(f"{48 * k} {48 * k + 47} {48 * k + 5} {48 * k + 24} {48 * k + 42}\n"
                    for k in range(10)))
    split = root / "split318.json"
    split.write_text(json.dumps({"train": ids[:2], "val": [ids[2]], "test": ids[3:],
                                 "all": ids}))
    # tt1: our detector found the same 10 shots -> labels copied by index.
    make_features(features / ids[0], [2.0 * (k + 1) for k in range(10)])
    # tt2: 11 shots. Our cut at 3.0 s is 1.0 s from MovieNet's cuts at 2 s and 4 s (both
    # boundaries land on it: merged, 1 wins over -1); MovieNet's cut at 6 s has no cut of ours
    # within 1 s (nearest 7.5 s): dropped; MovieNet's shot 4 [8, 10) is split at 9 s.
    make_features(features / ids[1], [3.0, 7.5, 8.0, 9.0, 10.0, 12.04, 14.0, 16.0, 18.0, 20.0,
                                      20.5])
    # tt3: not extracted; tt4: interrupted extract (no manifest.json).
    make_features(features / ids[3], [2.0 * (k + 1) for k in range(10)], complete=False)
    # tt5: same shot count, but a 30 s timeline: reported as a timeline mismatch.
    make_features(features / ids[4], [3.0 * (k + 1) for k in range(10)])
    return {"labels": labels_dir, "shots": shots_dir, "split": split, "features": features}


def test_movienet_conversion(tmp_path):
    paths = _movienet_fixture(tmp_path)
    manifest = tmp_path / "out" / "movienet.jsonl"
    report = movienet.convert_movienet(paths["labels"], paths["shots"], paths["split"],
                                       paths["features"], manifest)
    entries = {e.movie_id: e for e in read_manifest(manifest)}  # validates against the Parquet
    assert sorted(entries) == ["tt0000001", "tt0000002", "tt0000005"]
    assert sorted(report.skipped) == ["tt0000003", "tt0000004"]
    assert "no manifest.json" in report.skipped["tt0000004"]
    assert [entries[i].split for i in ("tt0000001", "tt0000002", "tt0000005")] == [
        "train", "train", "test"]

    assert entries["tt0000001"].scene_labels == [1, -1, 1, 0, 0, -1, 0, 1, 0, None]
    assert report.transfers["tt0000001"].method == "index"

    assert entries["tt0000002"].scene_labels == [1, 0, 0, 0, 0, -1, 0, 1, 0, 0, None]
    t = report.transfers["tt0000002"]
    assert (t.method, t.n_source_shots, t.n_boundaries, t.n_matched, t.n_merged) == (
        "time", 10, 5, 4, 1)

    assert len(report.warnings) == 1 and "tt0000005" in report.warnings[0]
    assert "30.0 s" in report.warnings[0]


def test_movienet_forced_transfers(tmp_path):
    paths = _movienet_fixture(tmp_path)
    manifest = tmp_path / "m.jsonl"
    movienet.convert_movienet(paths["labels"], paths["shots"], paths["split"],
                              paths["features"], manifest, transfer="time", tolerance_s=0.5)
    entries = {e.movie_id: e for e in read_manifest(manifest)}
    # By time with equal shot lists: the same labels except the last shot's (never labelled).
    assert entries["tt0000001"].scene_labels == [1, -1, 1, 0, 0, -1, 0, 1, 0, None]
    # 0.5 s tolerance: the cuts at 2 s and 4 s are too far from our 3.0 s cut now.
    assert entries["tt0000002"].scene_labels == [0, 0, 0, 0, 0, -1, 0, 1, 0, 0, None]
    with pytest.raises(MegaPipeError, match="MovieNet has 10 shots, the features have 11"):
        movienet.convert_movienet(paths["labels"], paths["shots"], paths["split"],
                                  paths["features"], manifest, transfer="index")


def test_movienet_bad_inputs(tmp_path):
    paths = _movienet_fixture(tmp_path)
    (paths["labels"] / "tt0000001.txt").write_text("0000 1\n0001 7\n")
    with pytest.raises(MegaPipeError, match=r"tt0000001.txt:2: label 7"):
        movienet.convert_movienet(paths["labels"], paths["shots"], paths["split"],
                                  paths["features"], tmp_path / "m.jsonl")
    (paths["labels"] / "tt0000001.txt").write_text("0000 1\n0012 0\n")
    with pytest.raises(MegaPipeError, match=r"shot 12 out of range"):
        movienet.convert_movienet(paths["labels"], paths["shots"], paths["split"],
                                  paths["features"], tmp_path / "m.jsonl")
    with pytest.raises(MegaPipeError, match="no movie of .* has a complete feature folder"):
        movienet.convert_movienet(paths["labels"], paths["shots"], paths["split"],
                                  tmp_path / "empty", tmp_path / "m.jsonl")


def test_movienet_cli(tmp_path, capsys):
    paths = _movienet_fixture(tmp_path)
    manifest = tmp_path / "cli.jsonl"
    args = ["--labels", str(paths["labels"]), "--shots", str(paths["shots"]), "--split-file",
            str(paths["split"]), "--features", str(paths["features"]), "--manifest", str(manifest)]
    assert main(["manifest", "movienet", *args]) == 0
    out = capsys.readouterr().out
    assert "tt0000002: MovieNet has 10 shots, the features 11" in out
    assert "4/5 boundaries" in out and "tt0000003: skipped" in out
    assert len(read_manifest(manifest)) == 3
    # the old spelling still works (a hidden alias)
    manifest.unlink()
    assert main(["manifest-movienet", *args]) == 0
    assert "4/5 boundaries" in capsys.readouterr().out and len(read_manifest(manifest)) == 3


# ----------------------------------------------------------------------------- TRIPOD

HEIST = ["A crew of thieves plans to rob the city's largest casino.",
         'The leader recruits a young hacker known as "the kid".',
         "Rehearsals go wrong and the kid is arrested.",
         "The crew breaks him out of jail on the night before the heist.",
         "During the robbery the casino owner discovers the plan.",
         "The crew is trapped in the vault.",
         "The kid hacks the doors open and they escape with the money.",
         "Months later, the crew meets again on a beach."]


def _marked(sentences):
    return " ".join(f"[STR_SENT] {s} [END_SENT]" for s in sentences) + " "


def _tripod_fixture(root: Path) -> dict[str, Path]:
    header = ["movie_name", "synopsis_raw", "synopsis_segmented", "tp1", "tp2", "tp3", "tp4", "tp5"]
    raw = "\n".join(HEIST[:4]) + "\n\n" + "\n".join(HEIST[4:])
    drama = ["Anna returns home.", "   ", "Her father is ill\nand silent.", "They argue.",
             "He dies.", "She stays."]
    space = ["A probe finds a signal.", "A crew is sent.", "The ship is damaged.",
             "One astronaut stays behind.", "The crew returns.", "The signal stops."]
    train, test = root / "TRIPOD_synopses_train.csv", root / "TRIPOD_synopses_test.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerow(["Heist Movie_0", raw, _marked(HEIST), "1", "2", "4", "6", "7"])
        w.writerow(["Heist Movie_1", raw, _marked(HEIST), "1.0", "3", "4", "", "7.0"])
        w.writerow(["Quiet Drama", "...", json.dumps(drama), "0", "2", "3", "4", "5"])
    with open(test, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerow(["Space Story (film)", "...", repr(space), "0", "1", "2", "3", "4"])
    features = root / "features"
    make_features(features / "heist_movie", [5.0 * (k + 1) for k in range(30)], HEIST)
    make_features(features / "Space Story (film)", [4.0, 8.0], space[:5])  # stale synopsis
    return {"train": train, "test": test, "features": features}


def test_tripod_conversion(tmp_path):
    paths = _tripod_fixture(tmp_path)
    manifest, synopses = tmp_path / "tripod.jsonl", tmp_path / "synopses"
    report = tripod.convert_tripod({"train": paths["train"], "test": paths["test"]},
                                   paths["features"], manifest, synopses)
    entries = {e.movie_id: e for e in read_manifest(manifest, check_features=False)}
    assert sorted(entries) == ["Space Story (film)", "heist_movie", "quiet_drama"]
    heist = entries["heist_movie"]
    assert heist.split == "train" and heist.features == paths["features"] / "heist_movie"
    # Two annotators merged; "1.0" -> 1; the empty tp4 cell of annotator 1 adds nothing.
    assert heist.tp_sentences == [[1], [2, 3], [4], [6], [7]]
    assert report.movies["heist_movie"].n_annotations == 2
    assert (synopses / "heist_movie.txt").read_text(encoding="utf-8").splitlines() == HEIST
    # The blank sentence is dropped and the later indices renumbered; newlines collapsed.
    assert entries["quiet_drama"].tp_sentences == [[0], [1], [2], [3], [4]]
    assert (synopses / "quiet_drama.txt").read_text().splitlines() == [
        "Anna returns home.", "Her father is ill and silent.", "They argue.", "He dies.",
        "She stays."]
    assert entries["Space Story (film)"].split == "test"
    assert sorted(report.problems) == ["Space Story (film)", "quiet_drama"]
    assert "differ" in report.problems["Space Story (film)"]
    assert "does not exist" in report.problems["quiet_drama"]

    with pytest.raises(MegaPipeError, match="does not exist"):
        read_manifest(manifest)
    # "Extract" the missing movies from the synopsis files: now everything validates.
    for movie_id in ("quiet_drama", "Space Story (film)"):
        sentences = (synopses / f"{movie_id}.txt").read_text().splitlines()
        make_features(paths["features"] / movie_id, [3.0, 6.0, 9.0], sentences)
    assert len(read_manifest(manifest)) == 3
    report = tripod.convert_tripod({"train": paths["train"], "test": paths["test"]},
                                   paths["features"], manifest, synopses)
    assert report.problems == {}


def test_tripod_name_map_and_cli(tmp_path, capsys):
    paths = _tripod_fixture(tmp_path)
    name_map = tmp_path / "names.json"
    name_map.write_text(json.dumps({"Heist Movie": "tt0000042"}))
    manifest = tmp_path / "mapped.jsonl"
    assert main(["manifest", "tripod", "--train", str(paths["train"]), "--test", str(paths["test"]),
                 "--features", str(paths["features"]), "--manifest", str(manifest),
                 "--synopsis-dir", str(tmp_path / "syn"), "--name-map", str(name_map)]) == 0
    out = capsys.readouterr().out
    assert "'Heist Movie' -> tt0000042 (train): 8 sentences, 2 annotations" in out
    assert "'Quiet Drama': not in the name map, skipped" in out
    [entry] = read_manifest(manifest, check_features=False)
    assert entry.movie_id == "tt0000042" and (tmp_path / "syn" / "tt0000042.txt").is_file()
    # no split given: a usage error; a bad name map: one error line
    assert main(["manifest", "tripod", "--features", str(paths["features"]), "--manifest",
                 str(manifest), "--synopsis-dir", str(tmp_path / "syn")]) == 2
    assert "give at least one of --train" in capsys.readouterr().err
    name_map.write_text("[1, 2]")
    assert main(["manifest-tripod", "--train", str(paths["train"]), "--features",
                 str(paths["features"]), "--manifest", str(manifest), "--synopsis-dir",
                 str(tmp_path / "syn"), "--name-map", str(name_map)]) == 2
    assert capsys.readouterr().err.startswith("mega-pipe: error: ")


@pytest.mark.parametrize("row, message", [
    (["X", "", _marked(["One.", "Two."]), "0", "1", "2", "1", "1"], "row 1 .*tp3 = 2 but the synopsis has 2"),
    (["X", "", _marked(["One.", "Two."]), "0", "1", "0.5", "1", "1"], "row 1 .*'0.5'"),
    (["X", "", "One. Two.", "0", "1", "1", "1", "1"], "neither"),
    (["X", "", json.dumps(["One.", " ", "Two."]), "0", "1", "1", "1", "1"], "tp2 = 1 points to an empty"),
])
def test_tripod_bad_rows(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movie_name", "synopsis_raw", "synopsis_segmented", "tp1", "tp2", "tp3", "tp4", "tp5"])
        w.writerow(row)
    with pytest.raises(MegaPipeError, match=message):
        tripod.read_tripod_csv(path)


def test_tripod_missing_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("movie_name,synopsis_segmented,tp1,tp2,tp3,tp4\n")
    with pytest.raises(MegaPipeError, match="missing column.*tp5"):
        tripod.read_tripod_csv(path)
