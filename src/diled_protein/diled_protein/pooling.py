"""Pooling a per-position representation ``[B, L, E]`` over real positions into one vector.

* ``mean``: average over real positions -> ``[B, E]``;
* ``attention``: softmax-weighted sum with one learned score per position (ReLSO's global attention
  pooling) -> ``[B, E]``;
* ``flatten``: padding zeroed, positions concatenated -> ``[B, L * E]``. Needs a fixed width ``L``;
  the projection that follows is position-specific, which keeps *which residue sits where* and lets a
  small model reconstruct unseen sequences far better than the order-free poolings (see
  configs/protein/demo.yaml).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["AttentionPool", "FlattenPool", "MeanPool", "Pooling", "make_pool", "masked_mean"]

Pooling = Literal["mean", "attention", "flatten"]


def masked_mean(h: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``h [B, L, E]`` over positions where ``mask [B, L]`` is true -> ``[B, E]``."""
    w = mask.to(h.dtype).unsqueeze(-1)
    return (h * w).sum(1) / w.sum(1).clamp_min(1.0)


class MeanPool(nn.Module):
    """``(h [B, L, E], mask [B, L]) -> [B, E]``: mean over real positions."""

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return masked_mean(h, mask)


class AttentionPool(nn.Module):
    """``(h [B, L, E], mask [B, L]) -> [B, E]``: softmax-weighted sum over real positions (ReLSO)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        # The fill is the scores' own lowest value: under autocast (bf16-mixed) the scores are bf16 while
        # ``h`` may be float32, whose lowest value does not fit in bf16. A finite fill (not -inf) keeps a
        # row without real positions finite (uniform weights) instead of NaN.
        s = self.score(h).squeeze(-1)
        s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        return torch.einsum("bl,ble->be", s.softmax(-1), h)


class FlattenPool(nn.Module):
    """``(h [B, L, E], mask [B, L]) -> [B, L * E]``: padding zeroed, positions concatenated."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        if h.shape[1] != self.length:
            raise ValueError(
                f"flatten pooling was built for {self.length} positions but got {h.shape[1]}; "
                "set the encoder's max_length to the data's max_length."
            )
        return (h * mask.unsqueeze(-1).to(h.dtype)).flatten(1)


def make_pool(kind: Pooling, dim: int, length: int | None = None) -> tuple[nn.Module, int]:
    """A pooling module for features of size ``dim`` and its output size.

    ``length`` (positions per example) is needed by ``flatten`` only.
    """
    if kind == "mean":
        return MeanPool(), dim
    if kind == "attention":
        return AttentionPool(dim), dim
    if kind == "flatten":
        if length is None:
            raise ValueError("pooling='flatten' needs the sequence length: pass max_length to the encoder.")
        return FlattenPool(length), length * dim
    raise ValueError(f"unknown pooling {kind!r}; choose 'mean', 'attention' or 'flatten'")
