"""What issue 20's speed-ups must not change: shot cuts on the real test videos, and features
that do not depend on timing (timings themselves are measured in bench/bench_extract.py)."""
from __future__ import annotations

import json
import threading
import time

import cv2
import pytest
from conftest import BUNNY, PYSCENE, TESTVIDEO, need
from mega_pipe.pipeline.decode import MovieDecoder, downscale
from mega_pipe.pipeline.decode_pass import decode_pass
from mega_pipe.pipeline.inputs import ExtractConfig
from mega_pipe.pipeline.models import ExtractorPool
from mega_pipe.pipeline.probe import probe
from mega_pipe.pipeline.shots import DetectorConfig, ShotDetector

REAL = {"testvideo": TESTVIDEO, "fades": PYSCENE / "fades.mp4", "counter": PYSCENE / "counter.mp4",
        "bigbuckbunny": BUNNY}
_frames_cache: dict = {}


def frames_of(name: str, size: int = 256):
    """Every frame of a real video at extract's working size (256: the paper and tiny sets)."""
    if (name, size) not in _frames_cache:
        info = probe(need(REAL[name]))
        with MovieDecoder(info, size, audio=False) as dec:
            _frames_cache[name, size] = (info, [f.image for f in dec.frames()])
    return _frames_cache[name, size]


def stock_pyscenedetect(cfg: DetectorConfig, info, frames) -> tuple[list[int], list[float]]:
    """PySceneDetect's own detector, untouched, on BGR frames shrunk as ShotDetector shrinks
    them: (cuts, every frame's score)."""
    from scenedetect import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    min_len = max(1, round(cfg.min_shot_len_s * float(info.video.frame_rate)))
    det = (AdaptiveDetector if cfg.detector == "adaptive" else ContentDetector)(min_scene_len=min_len)
    cuts, scores = [], []
    for i, rgb in enumerate(frames):
        small = downscale(rgb, ShotDetector.factor(rgb.shape[1]))
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        cuts += [tc.frame_num for tc in det.process_frame(FrameTimecode(i, info.video.frame_rate), bgr)]
        scores.append(det._frame_score)
    if hasattr(det, "post_process"):
        cuts += [tc.frame_num for tc in det.post_process(FrameTimecode(len(frames) - 1, info.video.frame_rate)) or []]
    return sorted(c for c in set(cuts) if 0 < c < len(frames)), scores


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_hsv_detector_scores_and_cuts_identical_to_pyscenedetect(name, detector):
    """The HSV-fed detector gives every frame exactly PySceneDetect's score (float equality,
    not closeness), hence exactly its cuts, on every real test video."""
    info, frames = frames_of(name)
    cfg = DetectorConfig(detector)
    det = ShotDetector(cfg, info.video.frame_rate)
    assert det.hsv
    scores = []
    for i, f in enumerate(frames):
        det.push(i, i / float(info.video.frame_rate), f)
        scores.append(det.detector._frame_score)
    want_cuts, want_scores = stock_pyscenedetect(cfg, info, frames)
    assert scores == want_scores
    assert [s.start_frame for s in det.finish(len(frames))[1:]] == want_cuts


@pytest.mark.parametrize("video", ["testvideo.mp4", "fades.mp4", "counter.mp4"])
@pytest.mark.parametrize("detector,golden", [("adaptive", "AdaptiveDetector"),
                                              ("content", "ContentDetector")])
def test_cuts_match_pyscenedetect_goldens(video, detector, golden):
    """With PySceneDetect's default minimum length (15 frames), the cuts found on our 256 px
    frames are PySceneDetect's own regression goldens."""
    info, frames = frames_of(video.removesuffix(".mp4"))
    det = ShotDetector(DetectorConfig(detector, min_shot_len_s=15 / float(info.video.frame_rate)),
                       info.video.frame_rate)
    for i, f in enumerate(frames):
        det.push(i, 0.0, f)
    want = json.loads((PYSCENE / "goldens" / f"{video}.{golden}.default.json").read_text())["cuts"]
    assert [s.start_frame for s in det.finish(1.0)[1:]] == want


def test_decode_pass_cuts_identical_to_pyscenedetect():
    """The whole pass (the detector fed the clip model's half-size copies) cuts the real
    videos exactly where stock PySceneDetect cuts the same frames."""
    cfg = ExtractConfig(model_set="tiny", progress=False)
    pool = ExtractorPool(cfg)
    for name in ("testvideo", "bigbuckbunny"):
        info, frames = frames_of(name)
        res = decode_pass(info, cfg, pool, ["action"], detect=True)
        want, _ = stock_pyscenedetect(cfg.detector, info, frames)
        assert [s.start_frame for s in res.shots[1:]] == want
        assert res.n_frames == len(frames)


def test_features_do_not_depend_on_when_the_models_are_ready(monkeypatch):
    """Batches always start at multiples of the batch size, so the features are the same
    bytes whether the models were built before the first frame or long after (samples wait
    for them): batch composition changes the ViT's and 3-D CNN's float rounding."""
    import mega_pipe.pipeline.decode_pass as dp

    cfg = ExtractConfig(model_set="tiny", progress=False)
    info = probe(need(TESTVIDEO))
    mods = ["clip", "action"]
    fast_pool = ExtractorPool(cfg)
    fast_pool.get(mods)                                 # built before decoding starts
    ready = decode_pass(info, cfg, fast_pool, mods, detect=False).samples

    build = dp._build_models
    gate = threading.Event()

    def late(pool, ms, clock):
        gate.wait(30)                                   # released in mid-movie
        return build(pool, ms, clock)

    class Decoder(dp.MovieDecoder):
        def frames(self):
            for f in super().frames():
                if f.index == 300:                      # 10 s in: ~9 samples are waiting
                    gate.set()
                    time.sleep(2)                       # the models are built meanwhile
                yield f

    monkeypatch.setattr(dp, "_build_models", late)
    monkeypatch.setattr(dp, "MovieDecoder", Decoder)
    late_res = decode_pass(info, cfg, ExtractorPool(cfg), mods, detect=False)
    for m in mods:
        assert len(ready[m][2]) == 25
        assert ready[m][2].tobytes() == late_res.samples[m][2].tobytes(), m
    assert late_res.stats["model_wait_seconds"] >= 0


def test_account_is_recorded():
    """The manifest's per-stage account: every stage of the pass, FFmpeg's CPU, encoders."""
    cfg = ExtractConfig(model_set="tiny", progress=False)
    info = probe(need(BUNNY))
    t0 = time.perf_counter()
    res = decode_pass(info, cfg, ExtractorPool(cfg), ["clip", "audio"], detect=True)
    acc = res.stats["account"]
    assert {"frames", "downscale", "shots", "sampling", "audio_windows"} <= set(acc["main"])
    assert acc["threads"]["ffmpeg_cpu"] > 0 and acc["threads"]["video_reader_cpu"] > 0
    assert set(acc["encode"]) == {"clip", "audio"} and acc["encode"]["clip"]["batches"] == 1
    assert 0 < acc["process_cpu"] and acc["main"]["shots"]["wall"] < time.perf_counter() - t0
