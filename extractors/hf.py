"""Loading Hugging Face transformers models from a local weights file, quietly and strictly."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from .base import check_loaded


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars, restoring the caller's settings."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_pretrained(model_cls: Any, weights_file: Path, config: Any, model_id: str, **kwargs: Any) -> nn.Module:
    """``model_cls.from_pretrained`` on the folder of ``weights_file`` with an explicit config.

    The config comes from the registry entry, so the folder needs only the weights file (no
    ``config.json``); nothing is fetched from the network. transformers renames legacy
    checkpoint keys and strips a task model's prefix; heads the feature model does not have are
    ignored, but any feature-model tensor left unloaded or of the wrong shape raises.
    """
    if weights_file.name != "model.safetensors":
        raise ValueError(f"{model_id}: expected a model.safetensors file, got {weights_file.name}")
    with quiet_transformers():
        model, info = model_cls.from_pretrained(
            weights_file.parent,
            config=config,
            local_files_only=True,
            use_safetensors=True,
            output_loading_info=True,
            **kwargs,
        )
    check_loaded(model_id, info["missing_keys"], info["mismatched_keys"])
    return model
