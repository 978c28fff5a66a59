"""The one-pass decoder: exact timestamps (CFR, VFR, offset starts), rotation, audio, errors."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from conftest import BUNNY, TESTVIDEO, ffmpeg, need
from mega_pipe.manifests.errors import InputError
from mega_pipe.pipeline.decode import AUDIO_RATE, MovieDecoder, downscale
from mega_pipe.pipeline.probe import probe
from mega_pipe.pipeline.sampling import AudioWindower, SecondSampler


def decode_all(path, size=64, audio=True):
    info = probe(path)
    with MovieDecoder(info, size, audio=audio) as dec:
        frames = [(f.index, f.t, f.image.copy()) for f in dec.frames()]
        audio_data = dec.take_audio() if audio else None
        return info, dec, frames, audio_data


def test_testvideo_probe_and_timestamps():
    info, dec, frames, _ = decode_all(need(TESTVIDEO))
    assert info.video.frame_rate == Fraction(30000, 1001)
    assert info.audio is None
    assert len(frames) == 720
    # CFR 29.97: frame n is at n * 1001/30000 s, exactly (up to float printing)
    for n in (0, 1, 30, 719):
        assert frames[n][1] == pytest.approx(n * 1001 / 30000, abs=1e-9)
    assert dec.end_time == pytest.approx(720 * 1001 / 30000, abs=1e-6)
    # working size keeps the 16:9 display aspect with a 64 px short side
    assert frames[0][2].shape == (64, 114, 3)


def test_vfr_timestamps_and_per_second_frames(vfr_movie):
    info = probe(vfr_movie)
    sampler = SecondSampler(clip_len=16, fps=float(info.video.frame_rate))
    samples, times, small = [], [], []
    with MovieDecoder(info, 64, audio=False) as dec:
        for f in dec.frames():
            times.append(f.t)
            small.append(downscale(f.image, 2))
            samples += sampler.push(f, small[-1])
        samples += sampler.finish(dec.end_time)
    # Reference: PyAV's own decode of the same file (independent of our FFmpeg pipe).
    import av

    with av.open(str(vfr_movie)) as c:
        expected = [float(f.time) for f in c.decode(c.streams.video[0])]
    assert len(times) == len(expected) == 120
    np.testing.assert_allclose(times, expected, atol=1e-9)
    assert times[10] == pytest.approx(1.0) and times[70] == pytest.approx(3.0, abs=0.03)
    # The frame on screen at k + 0.5 s: found by presentation time, not by index * mean rate
    # (a CFR assumption at the mean 30 fps would pick frames 15, 45, 75, 105).
    on_screen = [max(i for i, t in enumerate(expected) if t <= k + 0.5) for k in range(4)]
    assert on_screen[:2] == [5, 15]
    assert [s.frame_index for s in samples] == on_screen
    assert [(s.t_start, s.t_end) for s in samples] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    # Clips are 16 consecutive decoded frames centred on the sample's frame (8 before, 7 after,
    # clamped at the start), made of the half-size copies pushed with the frames.
    for s in samples:
        want = [min(max(i, 0), len(small) - 1) for i in range(s.frame_index - 8, s.frame_index + 8)]
        assert len(s.clip) == 16 and all(a is small[i] for a, i in zip(s.clip, want))
        assert s.clip[0].shape == (32, 57, 3) and s.image.shape == (64, 114, 3)


def test_offset_start_is_time_zero(offset_movie):
    info, dec, frames, audio = decode_all(offset_movie)
    assert float(info.video.start_time) > 9.9          # the container says the movie starts at ~10 s
    assert frames[0][1] == 0.0                          # ...our timeline starts at the first frame
    assert frames[25][1] == pytest.approx(1.0, abs=1e-3)
    # audio is aligned to the same origin: ~3 s of a 440 Hz tone
    assert audio is not None and abs(len(audio) - 3 * AUDIO_RATE) < 0.1 * AUDIO_RATE
    assert np.sqrt(np.mean(audio[AUDIO_RATE:2 * AUDIO_RATE] ** 2)) > 0.05


def test_rotation_is_applied(media):
    src = media / "landscape.mp4"
    rot = media / "rotated.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=1", "-c:v", "libx264",
           "-preset", "ultrafast", str(src))
    ffmpeg("-display_rotation", "90", "-i", str(src), "-c", "copy", str(rot))
    info, dec, frames, _ = decode_all(rot)
    assert info.video.rotation in (90, 270)
    assert (info.video.display_width, info.video.display_height) == (180, 320)
    assert frames[0][2].shape == (114, 64, 3)           # portrait after rotation


def test_bunny_six_channel_audio_to_16k_mono():
    info, dec, frames, audio = decode_all(need(BUNNY))
    assert info.audio.channels == 6
    assert len(frames) == 132
    assert abs(len(audio) - dec.end_time * AUDIO_RATE) < 0.05 * AUDIO_RATE
    w = AudioWindower(dec.audio_offset())
    w.feed(audio)
    windows = list(w.windows(dec.end_time))
    assert len(windows) == 6                             # one per second of the 5.28 s clip
    assert all(x.samples.shape == (10 * AUDIO_RATE,) for x in windows)
    assert windows[0].t_start == 0.0 and windows[0].t_end == pytest.approx(5.28, abs=1e-6)


def test_audio_windower_streaming_equals_batch():
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(int(23.3 * AUDIO_RATE)).astype(np.float32)
    batch = AudioWindower()
    batch.feed(audio)
    whole = list(batch.windows(23.3))
    stream = AudioWindower()
    got = []
    for chunk in np.array_split(audio, 97):
        stream.feed(chunk)
        got += list(stream.windows())
    got += list(stream.windows(23.3))
    assert len(whole) == len(got) == 24
    for a, b in zip(whole, got[:-6]):
        np.testing.assert_array_equal(a.samples, b.samples)
    # window k is centred on k + 0.5: window 10 starts at sample 5.5 s
    np.testing.assert_array_equal(whole[10].samples, audio[int(5.5 * AUDIO_RATE):int(15.5 * AUDIO_RATE)])
    # the first window is zero-padded before t = 0
    assert not whole[0].samples[: int(4.5 * AUDIO_RATE)].any()


def test_no_video_stream_is_an_error(media):
    wav = media / "only_audio.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", str(wav))
    with pytest.raises(InputError, match="no video stream"):
        probe(wav)


def test_garbage_file_is_an_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a movie" * 100)
    with pytest.raises(InputError, match="bad.mp4"):
        probe(bad)
