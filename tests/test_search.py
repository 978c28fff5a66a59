"""Zero-shot search (pipeline/search.py, docs/moments.md): real extracted movies give well-formed
ranked moments; a planted catalogue's moment is found through the FAISS index, which is built once
and reused; the text tower and tokenizer are the clip entry's; errors are one line."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mega_pipe.extractors.registry import REGISTRY
from mega_pipe.manifests.errors import MegaPipeError
from mega_pipe.manifests.features import FeatureFolder, samples_table, shots_table
from mega_pipe.pipeline.cli import main
from mega_pipe.pipeline.search import Searcher, TextEncoder, nms, propose_moments

QUERY = "a man runs along a beach"


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(REGISTRY["clip-tiny"])


@pytest.fixture(scope="module")
def extracted(cut_movie, tmp_path_factory) -> Path:
    """Two real movies extracted with the tiny clip model: OUT/cuts, OUT/cuts2."""
    out = tmp_path_factory.mktemp("search") / "OUT"
    path, _ = cut_movie
    assert main(["extract", str(path), "--models", "tiny", "--modalities", "clip", "--out", str(out),
                 "--no-progress"]) == 0
    assert main(["extract", str(path), "--id", "cuts2", "--models", "tiny", "--modalities", "clip",
                 "--out", str(out), "--no-progress"]) == 0
    return out


def test_search_real_movies_gives_ranked_moments_inside_each_movie(extracted, capsys):
    assert main(["search", QUERY, str(extracted)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    durations = {m: json.loads((extracted / m / "manifest.json").read_text())["probe"]["duration_s"]
                 for m in ("cuts", "cuts2")}
    assert {r["movie"] for r in rows} == {"cuts", "cuts2"}
    for r in rows:
        assert 0 <= r["start"] < r["end"] <= durations[r["movie"]] + 1e-6
        assert r["query"] == QUERY
    # same features, same scores: the two copies of the movie rank their moments alike
    by_movie = {m: [(r["start"], r["end"], r["score"]) for r in rows if r["movie"] == m] for m in durations}
    assert by_movie["cuts"] == by_movie["cuts2"]
    page = extracted.parent / "moments.html"
    assert main(["search", QUERY, str(extracted / "cuts"), "--format", "csv", "--top-k", "2",
                 "--html", str(page)]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 2 and table[0]["movie"] == "cuts"
    assert page.read_text().count("data:image/jpeg;base64,") == 2        # one frame per moment


def test_search_errors_are_one_line(extracted, cut_movie, tmp_path, capsys):
    def error(argv):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mega-pipe: error: "), err
        return err[0]

    assert "empty" in error(["search", "  ", str(extracted)])
    assert "context length 8" in error(["search", "a man runs along a beach at night", str(extracted)])
    place = tmp_path / "P"
    assert main(["extract", str(cut_movie[0]), "--models", "tiny", "--modalities", "place", "--out",
                 str(place), "--no-progress"]) == 0
    capsys.readouterr()
    assert "no clip features" in error(["search", QUERY, str(place / "cuts")])
    assert "neither a feature folder" in error(["search", QUERY, str(tmp_path)])


def test_tokenizer_is_bound_to_the_entry(encoder):
    ids = encoder.token_ids(QUERY)
    assert len(ids) == 8 and ids[-1] == 63 and ids[0] == 62 and max(ids[1:-1]) < 62   # tiny: vocab 64
    v = encoder.encode([QUERY, "a beach"])
    assert v.shape == (2, 32) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert not np.allclose(v[0], v[1])
    words, wid, sent = encoder.encode_tokens(QUERY)
    assert words.shape == (6, 32) and wid.tolist() == ids[1:-1] and np.allclose(sent, v[0], atol=1e-5)


def test_proposals_snap_to_shots_and_nms_suppresses_overlaps():
    t = np.arange(20.0)
    z = np.full(20, -1.0)
    z[6:11] = 3.0                      # the moment: seconds 6..10, a shot from 5.5 to 11
    moments = propose_moments(z, t, t + 1, np.array([5.5, 11.0, 20.0]), 20.0, top_k=5)
    assert moments[0, :2].tolist() in ([6.0, 11.0], [5.5, 11.0])
    assert moments[0, 2] == pytest.approx(15 / np.sqrt(5))
    kept = nms(np.array([[0, 10, 1.0], [1, 10, 0.9], [20, 30, 0.5]]), 0.5, 10)
    assert kept[:, 0].tolist() == [0, 20]


def _catalogue(root: Path, n: int, q: np.ndarray, target: int, seconds: int = 60) -> None:
    """``n`` feature folders of random unit clip vectors; movie ``target`` shows the query's
    vector (plus noise) in seconds 30-39."""
    rng = np.random.default_rng(0)
    meta = {"clip": {"dim": 32, "model_id": "clip-tiny", "weights_sha256": "x", "sampling": "frame"}}
    for m in range(n):
        v = rng.standard_normal((seconds, 32)).astype(np.float32)
        if m == target:
            v[30:40] = q * 6 + rng.standard_normal((10, 32))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        f = FeatureFolder(root / f"movie{m:03d}")
        (f.path / "samples").mkdir(parents=True)
        t = np.arange(seconds, dtype=float)
        f.write_samples(samples_table(f"movie{m:03d}", "clip", meta["clip"], t, t + 1, v, cache_key=f"k{m}"),
                        "clip")
        shots = [SimpleNamespace(index=i, start_frame=i * 250, end_frame=(i + 1) * 250, start_s=i * 10.0,
                                 end_s=(i + 1) * 10.0) for i in range(seconds // 10)]
        pooled = {"clip": (np.stack([v[i * 10:(i + 1) * 10].mean(0) for i in range(seconds // 10)]),
                           np.full(seconds // 10, 10))}
        f.write_shots(shots_table(f"movie{m:03d}", shots, pooled, meta, cache_key=f"s{m}"))
        f.write_manifest({"movie_id": f"movie{m:03d}", "contract": 1})


def test_catalogue_search_finds_the_planted_moment_through_a_reused_index(encoder, tmp_path, capsys):
    q = encoder.encode([QUERY])[0]
    _catalogue(tmp_path / "cat", 24, q, target=17)
    s1 = Searcher([tmp_path / "cat"], encoder=encoder)                 # 24 movies: indexed
    r1 = s1.search(QUERY)
    assert s1.index_state == "built" and s1.index_path.parent == tmp_path / "cat" / ".search-index"
    top = r1.moments[0]
    assert top["movie"] == "movie017" and top["start"] >= 28 and top["end"] <= 42
    s2 = Searcher([tmp_path / "cat"], encoder=encoder)
    assert s2.index_state == "reused" and s2.search(QUERY).moments == r1.moments
    # the same answer without the index
    s3 = Searcher([tmp_path / "cat"], encoder=encoder, index="never")
    assert s3.search(QUERY).moments[0]["movie"] == "movie017"
    # a changed movie changes the key: a new index
    f = FeatureFolder(tmp_path / "cat" / "movie003")
    t = f.read_samples("clip")
    f.write_samples(samples_table("movie003", "clip", f.samples_meta("clip"), t["t_start"], t["t_end"],
                                  t["vectors"][::-1].copy(), cache_key="changed"), "clip")
    assert Searcher([tmp_path / "cat"], encoder=encoder).index_state == "built"
    assert len(list((tmp_path / "cat" / ".search-index").glob("*.faiss"))) == 2
    # the command line: JSONL to a file
    out = tmp_path / "moments.jsonl"
    assert main(["search", QUERY, str(tmp_path / "cat"), "--out", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["movie"] == "movie017"
    assert "index: reused" in capsys.readouterr().err


def test_folders_of_different_clip_models_are_refused(tmp_path, encoder):
    q = encoder.encode([QUERY])[0]
    _catalogue(tmp_path / "a", 1, q, target=0)
    _catalogue(tmp_path / "b", 1, q, target=0)
    f = FeatureFolder(tmp_path / "b" / "movie000")
    t = f.read_samples("clip")
    meta = {**f.samples_meta("clip"), "model_id": "clip-vit-b-32-openai"}
    f.write_samples(samples_table("movie000x", "clip", meta, t["t_start"], t["t_end"], t["vectors"]), "clip")
    with pytest.raises(MegaPipeError, match="different models"):
        Searcher([tmp_path / "a" / "movie000", tmp_path / "b" / "movie000"], encoder=encoder)


def test_moment_training_reads_our_own_feature_folders(extracted, tmp_path, capsys):
    """`train --task moment` on a dataset of extract's folders: per-second clip vectors pooled to
    2 s clips, query tokens from the clip entry's text tower (docs/moments.md)."""
    from mega_pipe.manifests.moments import read_moment_dataset
    from mega_pipe.model.moment import load_split, pool_seconds

    lines = [{"qid": i, "query": q, "vid": vid, "duration": 8.0, "relevant_windows": [w]}
             for i, (q, vid, w) in enumerate([("a man runs", "cuts", [0, 3]), ("a beach", "cuts", [3, 5]),
                                              ("a dog", "cuts2", [5, 8]), ("the sea", "cuts2", [0, 3])])]
    for split, rows in (("train", lines[:2]), ("val", lines[2:])):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "moments.json").write_text(json.dumps({
        "format": "mega-pipe-moments/1", "clip_len": 2, "feature_folders": str(extracted),
        "splits": {"train": "train.jsonl", "val": "val.jsonl"}}))
    assert main(["train", "--task", "moment", "--manifest", str(tmp_path / "moments.json"), "--out",
                 str(tmp_path / "run"), "--config", "moment-small", "--epochs", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--manifest",
                 str(tmp_path / "moments.json"), "--split", "val"]) == 0
    assert json.loads(capsys.readouterr().out)["queries"] == 2
    # the pooled clips are the means of the per-second vectors of each 2 s
    s = FeatureFolder(extracted / "cuts").read_samples("clip")
    pooled = pool_seconds(s["t_start"], s["t_end"], s["vectors"], 2.0, 8.0)
    assert pooled.shape == (4, 32) and np.allclose(pooled[1], s["vectors"][2:4].mean(0), atol=1e-6)
    from mega_pipe.pipeline.cli.search import _text_features_factory
    data = load_split(read_moment_dataset(tmp_path / "moments.json"), "train", _text_features_factory())
    assert data.items[0].words.shape == (3, 32) and len(data.items[0].token_ids) == 3
