"""Shot detection on real files, and the overlap-mean pooling rule."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import PYSCENE, TESTVIDEO, need
from mega_pipe.pipeline.decode import MovieDecoder
from mega_pipe.pipeline.pooling import pool
from mega_pipe.pipeline.probe import probe
from mega_pipe.pipeline.shots import DetectorConfig, ShotDetector


def detect(path, cfg: DetectorConfig):
    info = probe(path)
    det = ShotDetector(cfg, info.video.frame_rate)
    with MovieDecoder(info, 224, audio=False) as dec:
        for f in dec.frames():
            det.push(f.index, f.t, f.image)
        return det.finish(dec.end_time)


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_testvideo_hard_cuts(detector):
    shots = detect(need(TESTVIDEO), DetectorConfig(detector))
    starts = [s.start_frame for s in shots]
    assert starts[0] == 0
    for cut in (30, 180):
        assert any(abs(s - cut) <= 1 for s in starts), starts
    # shots tile the movie: end exclusive = next start, times from PTS
    assert all(a.end_frame == b.start_frame and a.end_s == b.start_s for a, b in zip(shots, shots[1:]))
    assert shots[-1].end_frame == 720
    assert shots[1].start_s == pytest.approx(shots[1].start_frame * 1001 / 30000)


def test_fade_detector_matches_pyscenedetect_golden():
    import json

    golden = json.loads((PYSCENE / "goldens" / "testvideo.mp4.ThresholdDetector.default.json").read_text())
    shots = detect(need(TESTVIDEO), DetectorConfig("fade", min_shot_len_s=15 * 1001 / 30000))
    assert [s.start_frame for s in shots[1:]] == golden["cuts"]


def test_synthetic_cuts(cut_movie):
    path, cuts = cut_movie
    shots = detect(path, DetectorConfig())
    assert [s.start_frame for s in shots[1:]] == cuts


def test_min_shot_len_suppresses_short_shots(cut_movie):
    path, _ = cut_movie
    shots = detect(path, DetectorConfig(min_shot_len_s=2.5))   # the 2 s middle shot is too short
    assert len(shots) == 2


def brute_force_pool(shots, samples, vectors):
    out, counts = [], []
    for s, e in shots:
        hit = [i for i, (a, b) in enumerate(samples) if min(e, b) - max(s, a) > 0]
        counts.append(len(hit))
        out.append(vectors[hit].mean(0) if hit else np.zeros(vectors.shape[1]))
    return np.array(out, np.float32), np.array(counts)


def test_pooling_matches_brute_force():
    rng = np.random.default_rng(1)
    bounds = np.sort(rng.uniform(0, 100, 40))
    bounds = np.concatenate([[0], bounds, [100]])
    shots = list(zip(bounds[:-1], bounds[1:]))
    k = np.arange(100)
    per_second = list(zip(k, k + 1.0))
    windows = [(max(0, c - 5), min(100, c + 5)) for c in k + 0.5]
    cues = [(a, a + rng.uniform(0.5, 4)) for a in np.sort(rng.uniform(0, 95, 25))]
    for samples in (per_second, windows, cues):
        vec = rng.standard_normal((len(samples), 7)).astype(np.float32)
        ts, te = np.array(samples).T
        got, cnt = pool(bounds[:-1], bounds[1:], ts, te, vec)
        want, wcnt = brute_force_pool(shots, samples, vec)
        np.testing.assert_array_equal(cnt, wcnt)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # per-second intervals tile the timeline: every shot overlaps at least one sample
    _, cnt = pool(bounds[:-1], bounds[1:], k, k + 1.0, np.ones((100, 1), np.float32))
    assert (cnt >= 1).all()


def test_pooling_edges():
    vec = np.array([[1.0], [3.0]], np.float32)
    # touching intervals do not overlap (half-open); zero-length shots get nothing
    means, counts = pool(np.array([0.0, 1.0, 2.0, 5.0]), np.array([1.0, 2.0, 2.0, 6.0]),
                         np.array([1.0, 1.5]), np.array([2.0, 3.0]), vec)
    assert counts.tolist() == [0, 2, 0, 0]
    assert means[:, 0].tolist() == [0.0, 2.0, 0.0, 0.0]
