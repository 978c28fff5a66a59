"""The extractor protocol shared by every modality, built from a weights entry (entry.py).

An :class:`Extractor` turns a batch of decoded inputs (frames, clips, audio windows or sentences)
into one float32 vector per input. Everything that makes two feature files comparable — the
architecture, the weights file and its digest, and the preprocessing those weights were trained
with — lives in one :class:`WeightsEntry` (modelled on torchvision's ``Weights`` enums, where a
weights value carries its own transforms and metadata). An extractor never invents preprocessing:
it reads it from its entry, so changing the model can never silently keep the old transforms.

The same extractor class serves the ``paper`` model set (pretrained weights loaded from a file)
and the ``tiny`` set (a small randomly initialised architecture, seeded, needing no file): only the
entry differs, so the tiny set exercises exactly the preprocessing and ``encode`` code the real
models run.
"""
from __future__ import annotations

import abc
import contextlib
import hashlib
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from .entry import ENCODER_PRECISIONS, Sampling, WeightsEntry, file_sha256
from .errors import ExtractorError


class Extractor(abc.ABC):
    """Encodes batches of one modality into float32 ``(B, dim)`` arrays.

    Subclasses implement :meth:`_build_model`, :meth:`_load_model`, :meth:`_preprocess` and
    :meth:`_forward`. The constructor builds the model under a fixed seed, so the tiny set is
    deterministic whatever the global RNG state. ``sampling``, ``batch_size``, ``input_size``
    and ``clip_len`` come from the entry (the modality table and the weights' preprocessing).

    ``weights_sha256`` is the sha256 of the weights file actually loaded; for the tiny set, which
    loads no file, it is a sha256 over the initialised state dict (names, dtypes, shapes and
    bytes), so the provenance recorded in feature files still changes whenever the tiny model
    does.

    ``precision`` is the forward pass's: ``"fp32"``, or ``"bf16"`` — the model runs under
    ``torch.autocast`` in bfloat16 (weights stay fp32; preprocessing and the output are fp32).
    """

    def __init__(
        self,
        entry: WeightsEntry,
        weights_path: Path | None = None,
        weights_sha256: str | None = None,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
    ) -> None:
        if precision not in ENCODER_PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(ENCODER_PRECISIONS)}")
        if entry.needs_file != (weights_path is not None):
            raise ValueError(f"entry {entry.name}: a weights file is {'required' if entry.needs_file else 'not used'}")
        self.entry = entry
        self.name: str = entry.modality
        self.dim: int = entry.dim
        self.model_id: str = entry.name
        self.sampling: Sampling = entry.sampling
        self.batch_size: int = entry.batch_size
        self.input_size: int = entry.input_size
        self.clip_len: int = entry.clip_len
        self.precision = precision
        self.device = torch.device("cpu")
        with seeded(int(entry.arch.get("seed", 0))):
            model = self._build_model() if weights_path is None else self._load_file(Path(weights_path))
        self.model: nn.Module = self._feature_model(model).eval().requires_grad_(False)
        if weights_path is None:
            self.weights_sha256: str | None = state_dict_sha256(self.model)
        else:
            self.weights_sha256 = weights_sha256 or file_sha256(weights_path)
        self.to(device)

    def _load_file(self, path: Path) -> nn.Module:
        """:meth:`_load_model`, turning any failure into a one-line :class:`ExtractorError`.

        A file can pass the sha256 check and still not load only where no digest is published
        (then it may be any file of that name); the message says which file and what to do.
        """
        try:
            return self._load_model(path)
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            reason = reason if len(reason) <= 200 else reason[:199] + "…"
            raise ExtractorError(
                f"{path} does not load as {self.model_id} ({reason}); check it with `mega-pipe weights verify` "
                f"and replace it ({self.entry.fetch_hint})"
            ) from exc

    # -- to implement ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _build_model(self) -> nn.Module:
        """Build the architecture described by ``self.entry.arch``, randomly initialised."""

    @abc.abstractmethod
    def _load_model(self, path: Path) -> nn.Module:
        """Build the architecture and load the weights file; raise if any parameter stays unloaded."""

    def _feature_model(self, model: nn.Module) -> nn.Module:
        """The part of the (fully loaded) model that produces the feature; default: all of it.

        Checkpoints are loaded whole and strictly (classifier heads included), so a file of the
        wrong model cannot half-load; the heads are dropped only afterwards.
        """
        return model

    @abc.abstractmethod
    def _preprocess(self, batch: Any) -> Any:
        """Validate a raw batch and turn it into model input on ``self.device``."""

    @abc.abstractmethod
    def _forward(self, inputs: Any) -> torch.Tensor:
        """Run the model on preprocessed inputs; return ``(B, dim)``."""

    # -- protocol -------------------------------------------------------------------------------
    def encode(self, batch: Any) -> np.ndarray:
        """Preprocess ``batch`` and run the model under ``torch.inference_mode``.

        Returns a C-contiguous float32 array of shape ``(B, dim)``; an empty batch gives
        ``(0, dim)`` without running the model.
        """
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            inputs = self._preprocess(batch)
            with self._autocast():
                out = self._forward(inputs)
            if self.entry.preprocess.get("normalize_output", False):
                out = torch.nn.functional.normalize(out.float(), dim=-1)
        if out.shape != (len(batch), self.dim):
            raise RuntimeError(f"{self.model_id} produced {tuple(out.shape)}, expected ({len(batch)}, {self.dim})")
        return np.ascontiguousarray(out.float().cpu().numpy())

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to(self, device: str | torch.device) -> "Extractor":
        """Move the model (and where preprocessing runs) to ``device``; returns ``self``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.model_id}, dim={self.dim}, device={self.device}, "
                f"precision={self.precision})")


# -- helpers shared by the modality modules --------------------------------------------------------
@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU RNG seeded to ``seed``, restoring the caller's RNG state after.

    Models are always initialised on the CPU, so forking the CPU generator is enough; the global
    state seen by the rest of the program is unchanged.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def state_dict_sha256(model: nn.Module) -> str:
    """A deterministic digest of a module's state: every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a PyTorch checkpoint as a flat state dict, whatever its packaging.

    Handles the three layouts our paper weights use: a plain state dict (torchvision), a
    training checkpoint ``{"state_dict": ..., ...}`` saved from ``nn.DataParallel`` so that every
    key starts with ``module.`` (Places365), and a TorchScript archive (OpenAI's CLIP files, which
    ``torch.load(weights_only=True)`` refuses). Plain pickles are read with ``weights_only=True``.
    """
    if _is_torchscript(path):
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format OpenAI publishes
            warnings.simplefilter("ignore", DeprecationWarning)
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} is not a state dict or checkpoint (got {type(state).__name__})")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _is_torchscript(path: str | Path) -> bool:
    """TorchScript archives are zip files holding ``<archive>/constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith("/constants.pkl") for name in zf.namelist())


def check_loaded(model_id: str, missing: list[str] | set[str], mismatched: list | set = ()) -> None:
    """Fail loudly when a weights file left model parameters unloaded or had wrong shapes."""
    if missing or mismatched:
        details = sorted(missing)[:5] + [str(m) for m in list(mismatched)[:5]]
        raise RuntimeError(
            f"weights for {model_id} do not fit the architecture: {len(missing)} missing and "
            f"{len(mismatched)} mismatched tensors (e.g. {details})"
        )


def as_uint8_array(batch: Any, ndim: int, what: str) -> np.ndarray:
    """Check that ``batch`` is a uint8 RGB array with ``ndim`` dims and a last axis of 3."""
    if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != ndim or batch.shape[-1] != 3:
        shape = getattr(batch, "shape", None)
        dtype = getattr(batch, "dtype", type(batch).__name__)
        raise ValueError(f"expected {what} as a uint8 array with {ndim} dims ending in 3, got {dtype} {shape}")
    return batch
