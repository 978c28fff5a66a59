"""The ``bassl`` modality: BaSSL's shot encoder (Mun et al. 2022, kakaobrain/bassl), a ResNet-50.

**BaSSL's checkpoint format** (read in kakaobrain/bassl, commit 0651dd6):

- The released pre-training checkpoints (README "Model Zoo": ``bassl_40epoch.tar.gz``, AP 57.40
  after fine-tuning) unpack to ``<name>/model-v1.ckpt`` beside ``<name>/config.json``;
  ``pretrain/utils/main_utils.py::init_model`` loads ``CKPT_PATH/<LOAD_FROM>/model-v1.ckpt``
  with ``PretrainingWrapper.load_from_checkpoint``.
- The file is a PyTorch-Lightning (1.3.8) checkpoint: a dict with ``epoch``, ``global_step``,
  ``pytorch-lightning_version``, ``callbacks``, ``optimizer_states``, ``lr_schedulers`` and
  ``state_dict``. ``state_dict`` is the ``PretrainingWrapper``'s
  (``pretrain/pretrain_wrapper.py``): its sub-modules are ``shot_encoder`` (the ResNet-50),
  ``crn`` (the contextual relation network, a transformer) and ``loss`` (the pretext heads:
  ``loss.head_nce``, ``loss.head_msm``, ``loss.head_pp``, ``loss.head_cgm``;
  ``pretrain/loss/pretext_task.py``). So the encoder's keys are ``shot_encoder.conv1.weight``,
  ``shot_encoder.bn1.*``, ``shot_encoder.layer1.0.conv1.weight``, …, ``shot_encoder.layer4.2.bn3.*``.
- The encoder (``model/shot_encoder/resnet.py``) is torchvision's ResNet code ("Copy-Paste from
  torchvision") with ``in_channel_dim=3`` and **no ``fc``**: ``forward`` returns the flattened
  global average pool, 2048-d. Its parameter names are torchvision's, so the keys load into a
  torchvision ``resnet50`` whose ``fc`` is removed.
- A shot's feature is the **mean over its key frames** of the encoder's output
  (``PretrainingWrapper.extract_shot_representation(is_train=False)``: 3 key frames per shot);
  here each key frame is one sample and the shot pooling takes the mean (docs/contract.md).
- Test-time transform (``pretrain/cfg/default.yaml``, ``transform/resized_center_crop.py``):
  ``Resize(256, PIL bicubic)`` of the short side, ``CenterCrop(224)``, ImageNet mean/std.

Loading is strict for the backbone: every key of the torchvision trunk must be in the file with
its shape; the other tensors (CRN, heads) are dropped. Lightning 1.3 stores callback states keyed
by the callback *class*, so the pickle refers to ``pytorch_lightning`` classes; the file is read
with ``torch.load(weights_only=True)`` and any such reference is replaced by an inert stand-in
(nothing from the file is executed, and Lightning need not be installed).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import check_loaded
from .convnet import PooledCNNExtractor

# Where the shot encoder sits in the checkpoints we know: BaSSL's PretrainingWrapper
# ("shot_encoder."), a wrapper around it ("model.shot_encoder."), DataParallel ("module. ...").
SHOT_ENCODER_PREFIXES = ("shot_encoder.", "model.shot_encoder.", "module.shot_encoder.")


class _Unpickled:
    """Stand-in for a class a checkpoint's pickle names but we do not import (Lightning's
    callback classes, EasyDict, ...): it accepts any construction and keeps nothing."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def read_lightning_checkpoint(path: str | Path) -> dict:
    """A Lightning (or plain) checkpoint as a dict, loaded with ``weights_only=True``; every
    global the safe unpickler refuses is mapped to an inert stand-in class."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # unknown globals (Lightning classes): map them and retry
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            raise exc from None
        if not unsafe:
            raise
        stubs = [(type(name.rsplit(".", 1)[-1], (_Unpickled,), {}), name) for name in unsafe]
        with torch.serialization.safe_globals(stubs):
            return torch.load(path, map_location="cpu", weights_only=True)


def shot_encoder_state(checkpoint: dict, prefixes: tuple[str, ...] = SHOT_ENCODER_PREFIXES
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """The shot encoder's tensors (prefix removed) and the prefix found."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise RuntimeError(f"not a checkpoint: got {type(checkpoint).__name__}")
    for prefix in prefixes:
        found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if found:
            return found, prefix
    tops = sorted({k.split(".", 1)[0] for k in state})[:6]
    raise RuntimeError(f"no shot encoder in the checkpoint: no key starts with "
                       f"{' or '.join(prefixes)} (top-level names: {', '.join(tops) or 'none'})")


class BasslExtractor(PooledCNNExtractor):
    """BaSSL's ResNet-50 shot encoder on one frame (a key frame), 2048-d; the tiny entry is a
    :class:`TinyConvNet` like the other tiny image models."""

    def _build_model(self) -> nn.Module:
        model = super()._build_model()
        if self.entry.arch["builder"] == "torchvision":
            model.fc = nn.Identity()      # BaSSL's encoder has no classifier
        return model

    def _load_model(self, path: Path) -> nn.Module:
        model = self._build_model()
        prefixes = (self.entry.arch.get("prefix", SHOT_ENCODER_PREFIXES[0]),
                    *SHOT_ENCODER_PREFIXES)
        state, _ = shot_encoder_state(read_lightning_checkpoint(path), tuple(dict.fromkeys(prefixes)))
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        mismatched = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
                      for k, v in own.items() if k in state and state[k].shape != v.shape]
        check_loaded(self.model_id, missing, mismatched)
        model.load_state_dict({k: state[k] for k in own}, strict=True)
        return model

    def _feature_model(self, model: nn.Module) -> nn.Module:
        return model
