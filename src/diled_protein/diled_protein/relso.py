"""ReLSO-style transformer encoder (Castro et al. 2022; DiLED paper §5 "Proteins").

Token embedding (paper: 100) + sinusoidal positions -> transformer encoder (paper: 6 layers, 4 heads)
-> attention pooling over real positions -> linear -> μ (paper: 30-d). Layers are pre-norm GELU blocks
(``norm_first``, with a final LayerNorm) by default; ``norm_first=False, activation="relu",
attention_dropout=0`` is the authors' block (post-norm, ReLU, no dropout on attention weights). ``mean``
and ``flatten`` poolings are options (:mod:`diled_protein.pooling`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from diled_core import Batch, Encoder, use_rand_dropout
from torch import Tensor, nn

from .pooling import Pooling, make_pool
from .vocab import ProteinVocab

__all__ = ["ReLSOEncoder", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Transformer sinusoidal position encoding ``[length, dim]``."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class ReLSOEncoder(Encoder):
    """Protein tokens -> μ.

    Args:
        latent_dim: d (paper: 30).
        embed_dim: token embedding and transformer width (paper: 100).
        num_layers / num_heads: transformer depth and heads (paper: 6 / 4); ``embed_dim`` must be
            divisible by ``num_heads``.
        ff_dim: feed-forward width of each layer (ReLSO: 200).
        dropout: dropout in the transformer.
        pooling: ``attention`` (ReLSO), ``mean``, or ``flatten`` (position-specific projection; needs
            ``max_length``; reconstructs unseen sequences much better, see :mod:`diled_protein.pooling`).
        max_length: the data's ``max_length`` (residues); required by ``pooling="flatten"`` only.
        activation / norm_first: each layer's feed-forward activation and LayerNorm placement (default
            GELU, pre-norm with a final LayerNorm; the authors' ``EncoderBlock``: ``relu``, ``False``).
        attention_dropout: dropout on the attention weights (default: ``dropout``; the authors': 0).
        fast_dropout: draw the layers' CPU dropout masks with ``torch.rand`` (same distribution, ~1.7x
            faster than ``nn.Dropout``; :class:`diled_core.RandDropout`); ``False``: ``nn.Dropout``.

    Input: ``batch["tokens"]`` LongTensor ``[B, L]`` (ESM alphabet, residues + ``<eos>`` + ``<pad>``).
    """

    alphabet_name = "ESM-1b"

    def __init__(
        self,
        latent_dim: int = 30,
        embed_dim: int = 100,
        num_layers: int = 6,
        num_heads: int = 4,
        ff_dim: int = 200,
        dropout: float = 0.1,
        pooling: Pooling = "attention",
        max_length: int | None = None,
        activation: Literal["gelu", "relu"] = "gelu",
        norm_first: bool = True,
        attention_dropout: float | None = None,
        fast_dropout: bool = True,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"ReLSOEncoder: embed_dim={embed_dim} is not divisible by num_heads={num_heads}; "
                "change one of them (the paper uses 100 and 4)."
            )
        vocab = ProteinVocab()
        self.latent_dim = latent_dim
        self.pad_idx = vocab.pad_idx
        self.embed = nn.Embedding(vocab.size, embed_dim, padding_idx=vocab.pad_idx)
        layer = nn.TransformerEncoderLayer(
            embed_dim,
            num_heads,
            ff_dim,
            dropout,
            activation=activation,
            batch_first=True,
            norm_first=norm_first,
        )
        if attention_dropout is not None:
            layer.self_attn.dropout = attention_dropout
        final_norm = nn.LayerNorm(embed_dim) if norm_first else None
        self.transformer = nn.TransformerEncoder(
            layer, num_layers, norm=final_norm, enable_nested_tensor=False
        )
        if fast_dropout:
            use_rand_dropout(self.transformer)
        self.max_length = max_length
        self.pool, pooled = make_pool(pooling, embed_dim, None if max_length is None else max_length + 1)
        self.to_latent = nn.Linear(pooled, latent_dim)

    def forward(self, batch: Batch) -> Tensor:
        """``batch["tokens"] [B, L]`` -> μ ``[B, latent_dim]``."""
        tokens: Tensor = batch["tokens"]
        real = tokens.ne(self.pad_idx)
        # nn.Embedding starts at N(0, 1): the same scale as the sinusoids, so position is not drowned out
        h = self.embed(tokens) + sinusoidal_positions(
            tokens.shape[1], self.embed.embedding_dim, tokens.device
        )
        h = self.transformer(h, src_key_padding_mask=~real)
        return self.to_latent(self.pool(h, real))
