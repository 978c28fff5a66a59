"""The weights registry: resolution order, sha256 checks, the real loading paths, fetch and CLI.

The paper loading path is exercised with real paper architectures holding random weights
(torchvision ResNet-50 saved under the registry's file names, in both torchvision's and CSAIL's
checkpoint layouts), and with a transformers AST checkpoint written by ``save_pretrained``.
Downloads use ``file://`` URLs, so the fetch code runs for real without a network.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from mega_pipe.extractors import (
    MODALITIES,
    REGISTRY,
    WeightsEntry,
    WeightsIntegrityError,
    WeightsNotFoundError,
    build_extractors,
    entry_for,
    registry,
    weights_search_paths,
)
from mega_pipe.extractors.base import read_state_dict
from mega_pipe.extractors.entry import file_sha256
from mega_pipe.extractors.errors import ExtractorError
from mega_pipe.extractors.weights import ENV_VAR, fetch_weights, resolve_weights


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch) -> Path:
    """Point every library cache at an empty folder, so only the test's files can be found."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hf"))
    return home


def patch_entry(monkeypatch, name: str, **changes) -> WeightsEntry:
    entry = dataclasses.replace(REGISTRY[name], **changes)
    monkeypatch.setitem(REGISTRY, name, entry)
    return entry


def random_resnet50(num_classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


def frames(n: int = 2, short: int = 256) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, short, short * 16 // 9, 3), dtype=np.uint8)


def test_registry_is_complete_and_consistent() -> None:
    for m in MODALITIES:
        paper, tiny = entry_for("paper", m), entry_for("tiny", m)
        assert paper.needs_file and not tiny.needs_file and tiny.source.startswith("random-init")
        assert paper.preprocess == tiny.preprocess  # the tiny set runs the paper preprocessing
        assert paper.sha256 is None or re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", paper.sha256)
        json.dumps(paper.preprocess)  # configs are data
        json.dumps(paper.arch)
        assert paper.fetch_hint and "\n" not in paper.fetch_hint
    assert [entry_for("paper", m).dim for m in MODALITIES] == [512, 2048, 2048, 512, 768, 384, 2048]


def test_paper_preprocessing_matches_the_publishers() -> None:
    """Entries carry the transforms their weights ship with (torchvision, open_clip, AST, MiniLM)."""
    import open_clip
    from mega_pipe.extractors.subtitle import minilm_dir
    from transformers import ASTFeatureExtractor

    for name, weights in (("appr", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
                          ("action", torchvision.models.video.R2Plus1D_18_Weights.KINETICS400_V1)):
        entry, t = entry_for("paper", name), weights.transforms()
        assert entry.source == weights.url and entry.sha256 in weights.url
        resize = entry.preprocess["resize"]
        assert (resize if isinstance(resize, list) else [resize]) == list(t.resize_size)
        crop = entry.preprocess["crop"]
        assert (crop if isinstance(crop, list) else [crop]) == list(t.crop_size)
        assert entry.preprocess["mean"] == list(t.mean) and entry.preprocess["std"] == list(t.std)
    clip, cfg = entry_for("paper", "clip"), open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    assert clip.source == cfg["url"] and clip.sha256 in cfg["url"]
    assert (clip.preprocess["mean"], clip.preprocess["std"]) == (list(cfg["mean"]), list(cfg["std"]))
    assert clip.preprocess["interpolation"] == cfg["interpolation"] == "bicubic"
    model_cfg = open_clip.get_model_config("ViT-B-32")
    assert {k: clip.arch[k] for k in model_cfg} == model_cfg
    ast, fe = entry_for("paper", "audio"), ASTFeatureExtractor()
    assert (ast.preprocess["mean"], ast.preprocess["std"], ast.preprocess["num_mel_bins"]) == (fe.mean, fe.std, fe.num_mel_bins)
    minilm = entry_for("paper", "subtitle")
    package_cfg = json.loads((minilm_dir() / "config.json").read_text())
    assert all(package_cfg[k] == v for k, v in minilm.arch["config"].items())
    assert json.loads((minilm_dir() / "sentence_bert_config.json").read_text())["max_seq_length"] == 256


def test_real_loading_path_for_torchvision_and_csail_checkpoints(tmp_path: Path, monkeypatch) -> None:
    """Random ResNet-50s saved as torchvision and as CSAIL (``{"state_dict"}``, ``module.``) files load exactly."""
    appr_model, place_model = random_resnet50(1000), random_resnet50(365)
    appr_file = tmp_path / REGISTRY["resnet50-imagenet1k-v2"].filename
    torch.save(appr_model.state_dict(), appr_file)
    place_file = tmp_path / REGISTRY["resnet50-places365"].filename
    # CSAIL saved with PyTorch 0.2: the legacy (pre-zip) format, a training checkpoint, DataParallel keys.
    torch.save({"epoch": 90, "arch": "resnet50", "best_prec1": 54.65,
                "state_dict": {f"module.{k}": v for k, v in place_model.state_dict().items()}},
               place_file, _use_new_zipfile_serialization=False)
    # The test file is not the published one: publish its own digest (appr) or none (place, as real).
    patch_entry(monkeypatch, "resnet50-imagenet1k-v2", sha256=file_sha256(appr_file)[:8])
    built = build_extractors("paper", ["appr", "place"], weights_dirs=[tmp_path], offline=True)
    for name, saved, path in (("appr", appr_model, appr_file), ("place", place_model, place_file)):
        ex = built[name]
        assert ex.weights_sha256 == file_sha256(path)
        loaded = ex.model.state_dict()
        expected = {k: v for k, v in saved.state_dict().items() if not k.startswith("fc.")}
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], v) for k, v in expected.items())
        assert ex.encode(frames()).shape == (2, 2048)


def test_wrong_sha256_is_rejected(tmp_path: Path, monkeypatch) -> None:
    torch.save(random_resnet50(1000).state_dict(), tmp_path / REGISTRY["resnet50-imagenet1k-v2"].filename)
    # The registry's real prefix (11ad3fa6) is not this random file's digest.
    with pytest.raises(WeightsIntegrityError, match=r"resnet50-11ad3fa6\.pth has sha256 [0-9a-f]{64}.*prefix 11ad3fa6"):
        build_extractors("paper", ["appr"], weights_dirs=[tmp_path])


def test_a_file_of_the_wrong_model_fails_with_a_clear_error(tmp_path: Path) -> None:
    """Places365 publishes no digest, so a wrong file gets past the sha256 check but not the loader."""
    torch.save(random_resnet50(1000).state_dict(), tmp_path / REGISTRY["resnet50-places365"].filename)
    with pytest.raises(ExtractorError, match=r"resnet50_places365\.pth\.tar does not load as resnet50-places365 \(.*size mismatch") as info:
        build_extractors("paper", ["place"], weights_dirs=[tmp_path])
    assert "\n" not in str(info.value)


def test_transformers_checkpoint_loads_through_the_paper_path(tmp_path: Path, monkeypatch) -> None:
    """An AST classification checkpoint (legacy key names, prefix, head) loads via ``from_pretrained``."""
    from transformers import ASTConfig, ASTForAudioClassification

    arch = entry_for("tiny", "audio").arch
    torch.manual_seed(1)
    saved = ASTForAudioClassification(ASTConfig(**arch["config"], num_labels=7))
    entry = patch_entry(monkeypatch, "ast-audioset-10-10-0.4593", arch=arch, dim=arch["config"]["hidden_size"])
    saved.save_pretrained(tmp_path / Path(entry.filename).parent)
    ex = build_extractors("paper", ["audio"], weights_dirs=[tmp_path])["audio"]
    reference = saved.audio_spectrogram_transformer.state_dict()
    assert all(torch.equal(reference[k], v) for k, v in ex.model.state_dict().items())
    windows = np.random.default_rng(0).standard_normal((2, 160000)).astype(np.float32) * 0.1
    assert ex.encode(windows).shape == (2, 24)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_read_state_dict_reads_torchscript_archives(tmp_path: Path) -> None:
    """OpenAI ships CLIP as TorchScript, which ``torch.load(weights_only=True)`` refuses."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 4)), tmp_path / "net.pt")
    state = read_state_dict(tmp_path / "net.pt")
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_missing_weights_fail_fast_with_every_searched_path(tmp_path: Path, monkeypatch) -> None:
    def no_build(modality):
        raise AssertionError(f"{modality} was built before the missing files were reported")

    monkeypatch.setattr(registry, "extractor_class", no_build)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError) as info:
        build_extractors("paper", MODALITIES, offline=True, weights_dirs=[empty], allow_download=True)
    line, message = str(info.value), info.value.detail       # one line; every path in the detail
    assert "\n" not in line and "6 modalities" in line and "offline" in line   # + bassl (an archive)
    assert str(empty) in line and str(tmp_path / "env") in line      # the folders the user named
    for m in ("clip", "place", "appr", "action", "audio"):  # subtitle is found in its package
        entry = entry_for("paper", m)
        paths = weights_search_paths(entry, [empty])
        assert paths[0] == empty / entry.filename and paths[1] == tmp_path / "env" / entry.filename
        assert len(paths) >= 3
        for p in paths:
            assert str(p) in message
        assert entry.fetch_hint in message
    assert "--weights-dir" in line and "--models tiny" in line and not list(empty.iterdir())


def test_resolution_order(tmp_path: Path, monkeypatch, isolated_caches: Path) -> None:
    entry = entry_for("paper", "action")
    first, second, env = tmp_path / "a", tmp_path / "b", tmp_path / "env"
    cache = isolated_caches / "torch" / "hub" / "checkpoints"
    monkeypatch.setenv(ENV_VAR, str(env))
    paths = weights_search_paths(entry, [first, second])
    assert paths[:4] == [first / entry.filename, second / entry.filename, env / entry.filename,
                         cache / entry.filename]
    assert resolve_weights(entry, [first, second]) is None
    for folder in (cache, env, second):  # each later-created file is earlier in the order
        folder.mkdir(parents=True, exist_ok=True)
        (folder / entry.filename).write_bytes(b"x")
        assert resolve_weights(entry, [first, second]) == folder / entry.filename
    hf = weights_search_paths(entry_for("paper", "audio"))
    assert hf[-1:] == [isolated_caches / "hf" / "models--MIT--ast-finetuned-audioset-10-10-0.4593" / "snapshots" / "*" / "model.safetensors"]


def test_fetch_downloads_verifies_and_is_atomic(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "published" / "resnet50.pth"
    source.parent.mkdir()
    torch.save(random_resnet50(1000).state_dict(), source)
    good = patch_entry(monkeypatch, "resnet50-imagenet1k-v2", source=source.as_uri(), sha256=file_sha256(source))
    dest = tmp_path / "weights"
    # Not allowed, or offline: nothing is downloaded.
    for kwargs in ({}, {"allow_download": True, "offline": True}):
        with pytest.raises(WeightsNotFoundError):
            build_extractors("paper", ["appr"], weights_dirs=[dest], **kwargs)
    assert not dest.exists() or not any(dest.iterdir())
    ex = build_extractors("paper", ["appr"], weights_dirs=[dest], allow_download=True)["appr"]
    assert (dest / good.filename).is_file() and ex.weights_sha256 == good.sha256
    # A download with the wrong digest never lands under the real name.
    bad = dataclasses.replace(good, sha256="0" * 64)
    with pytest.raises(WeightsIntegrityError):
        fetch_weights(bad, tmp_path / "other")
    assert not any((tmp_path / "other").iterdir())
    unreachable = dataclasses.replace(good, source=(tmp_path / "nowhere.pth").as_uri())
    with pytest.raises(ExtractorError, match="could not download"):
        fetch_weights(unreachable, tmp_path / "other")


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    from mega_pipe.pipeline.cli import main

    status = main(argv)
    return status, capsys.readouterr().out


def test_weights_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    status, out = run_cli(["weights", "list"], capsys)
    assert status == 0
    assert out.count("built-in") == len(MODALITIES) and out.count("missing") == 6
    assert str(registry.resolve_weights(entry_for("paper", "subtitle"))) in out

    status, out = run_cli(["weights", "verify", "--model-set", "paper", "--modalities", "subtitle,place"], capsys)
    assert status == 1 and "all-minilm-l6-v2" in out and ": ok" in out and "resnet50-places365: missing" in out
    status, out = run_cli(["weights", "verify", "--model-set", "paper", "--modalities", "subtitle"], capsys)
    assert status == 0 and ": ok" in out

    places = tmp_path / "w" / REGISTRY["resnet50-places365"].filename
    places.parent.mkdir()
    places.write_bytes(b"not really a checkpoint")
    status, out = run_cli(["weights", "verify", "--weights-dir", str(places.parent), "--modalities", "place"], capsys)
    assert status == 0 and f"no published digest; sha256={file_sha256(places)}" in out

    appr = tmp_path / "w" / REGISTRY["resnet50-imagenet1k-v2"].filename
    appr.write_bytes(b"corrupt")
    status, out = run_cli(["weights", "verify", "--weights-dir", str(appr.parent), "--modalities", "appr"], capsys)
    assert status == 1 and "MISMATCH" in out

    source = tmp_path / "published.bin"
    source.write_bytes(b"weights")
    patch_entry(monkeypatch, "r2plus1d-18-kinetics400-v1", source=source.as_uri(), sha256=file_sha256(source))
    dest = tmp_path / "fetched"
    status, out = run_cli(["weights", "fetch", "--weights-dir", str(dest), "--model-set", "paper",
                           "--modalities", "action,subtitle"], capsys)
    assert status == 0, out
    assert (dest / REGISTRY["r2plus1d-18-kinetics400-v1"].filename).read_bytes() == b"weights"
    assert file_sha256(dest / REGISTRY["all-minilm-l6-v2"].filename) == REGISTRY["all-minilm-l6-v2"].sha256
    patch_entry(monkeypatch, "clip-vit-b-32-openai", source=(tmp_path / "gone.pt").as_uri())
    status, out = run_cli(["weights", "fetch", "--weights-dir", str(dest), "--modalities", "clip"], capsys)
    assert status == 1 and "clip-vit-b-32-openai: FAILED: could not download" in out


# -- BaSSL's released checkpoint (extractors/bassl.py) ----------------------------------------------
def _save_bassl_checkpoint(path: Path, monkeypatch, drop: str | None = None) -> dict:
    """A checkpoint with the structure and key names of BaSSL's `model-v1.ckpt`: Lightning 1.3's
    top-level keys, its callback states keyed by the callback *class* (so the pickle names a
    pytorch_lightning class, which is not installed when it is read back), and a state_dict
    holding the ResNet-50 encoder (no fc) under "shot_encoder." beside the CRN and the heads."""
    import sys
    import types

    names = ["pytorch_lightning", "pytorch_lightning.callbacks",
             "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    callback = type("ModelCheckpoint", (), {"__module__": names[-1]})
    sys.modules[names[-1]].ModelCheckpoint = callback
    encoder = torchvision.models.resnet50(weights=None)
    del encoder.fc
    trunk = {k: v.clone() for k, v in encoder.state_dict().items()}
    state = {f"shot_encoder.{k}": v for k, v in trunk.items() if k != drop}
    state.update({"crn.encoder.layer.0.attention.self.query.weight": torch.randn(768, 768),
                  "loss.head_nce.model.0.weight": torch.randn(2048, 2048),
                  "loss.head_pp.weight": torch.randn(2, 768)})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 39, "global_step": 19000, "pytorch-lightning_version": "1.3.8",
                "state_dict": state, "optimizer_states": [{"state": {}, "param_groups": []}],
                "lr_schedulers": [], "callbacks": {callback: {"best_model_score": torch.tensor(0.5),
                                                              "best_model_path": "model-v1.ckpt"}}},
               path)
    for name in names:                 # reading must not need Lightning
        monkeypatch.delitem(sys.modules, name)
    return trunk


def test_bassl_checkpoint_loads_its_shot_encoder_strictly(tmp_path: Path, monkeypatch) -> None:
    entry = entry_for("paper", "bassl")
    assert entry.filename == "bassl_40epoch/model-v1.ckpt" and entry.dim == 2048
    trunk = _save_bassl_checkpoint(tmp_path / entry.filename, monkeypatch)
    ex = build_extractors("paper", ["bassl"], weights_dirs=[tmp_path])["bassl"]
    loaded = ex.model.state_dict()
    assert loaded.keys() == trunk.keys()          # the CRN and the heads are dropped
    for k, v in trunk.items():
        assert torch.equal(loaded[k], v), k
    out = ex.encode(frames(2))
    assert out.shape == (2, 2048) and np.isfinite(out).all()
    assert ex.weights_sha256 == file_sha256(tmp_path / entry.filename)

    broken = tmp_path / "broken"
    _save_bassl_checkpoint(broken / entry.filename, monkeypatch, drop="layer3.1.bn2.running_mean")
    with pytest.raises(ExtractorError) as info:
        build_extractors("paper", ["bassl"], weights_dirs=[broken])
    message = str(info.value)
    assert "\n" not in message and "1 missing" in message and "layer3.1.bn2.running_mean" in message


def test_bassl_is_not_a_default_video_modality() -> None:
    from mega_pipe.extractors import KEYFRAME_MODALITIES, VIDEO_MODALITIES

    assert "bassl" in MODALITIES and "bassl" not in VIDEO_MODALITIES
    assert KEYFRAME_MODALITIES == ("bassl", "place", "clip")
    assert entry_for("tiny", "bassl").dim == 56
    with pytest.raises(ExtractorError, match="archive"):
        fetch_weights(entry_for("paper", "bassl"), Path("unused"))
