"""Linear + 1-D convolution decoder p_φ(x0 | z) for proteins (ReLSO-style; DiLED paper §5 "Proteins").

z ``[B, d]`` -> linear -> ``[B, C, L]`` (``L = max_length + 1`` positions: residues, ``<eos>``, pads)
-> residual conv blocks -> per-position logits over the residues and ``<eos>``. The NLL is the token
cross-entropy averaged over the real positions of each example (its residues and its ``<eos>``), so
the decoder learns where the sequence ends; :meth:`ConvDecoder.loss` returns it as the term ``nll``
(the core reports its mean as ``nll_mean``). Decoding is greedy (argmax) and cut at the first ``<eos>``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diled_core import Batch, Decoder, use_rand_dropout
from torch import Tensor, nn

from .vocab import ProteinVocab

__all__ = ["ConvDecoder"]


class _ConvBlock(nn.Module):
    """Pre-norm residual block: x + Conv1d(GELU(LayerNorm(x)))."""

    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # x [B, C, L]
        y = F.gelu(self.norm(x.transpose(1, 2)).transpose(1, 2))
        return x + self.drop(self.conv(y))


class ConvDecoder(Decoder):
    """Latent -> protein tokens.

    Args:
        latent_dim: d (must match the encoder).
        max_length: most residues a sequence may have (the data module's ``max_length``).
        channels: conv width C.
        num_layers: residual conv blocks.
        kernel_size: odd conv kernel size.
        dropout: dropout inside the blocks.
        fast_dropout: draw the CPU dropout masks with ``torch.rand`` (:class:`diled_core.RandDropout`);
            ``False``: ``nn.Dropout``.
    """

    alphabet_name = "ESM-1b"

    def __init__(
        self,
        latent_dim: int = 30,
        max_length: int = 50,
        channels: int = 128,
        num_layers: int = 3,
        kernel_size: int = 5,
        dropout: float = 0.1,
        fast_dropout: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvDecoder: kernel_size={kernel_size} must be odd so positions stay aligned.")
        vocab = ProteinVocab()
        self.latent_dim, self.max_length, self.channels = latent_dim, max_length, channels
        self.pad_idx, self.eos_idx = vocab.pad_idx, vocab.eos_idx
        self.register_buffer("to_class", vocab.token_to_class(), persistent=False)
        self.register_buffer("to_token", vocab.class_to_token(), persistent=False)
        self.project = nn.Linear(latent_dim, channels * (max_length + 1))
        self.blocks = nn.Sequential(*(_ConvBlock(channels, kernel_size, dropout) for _ in range(num_layers)))
        if fast_dropout:
            use_rand_dropout(self.blocks)
        self.norm = nn.LayerNorm(channels)
        self.out = nn.Linear(channels, vocab.num_classes)

    def logits(self, z: Tensor) -> Tensor:
        """z ``[B, d]`` -> logits ``[B, max_length + 1, num_classes]`` (classes: residues, then ``<eos>``)."""
        h = self.project(z).view(z.shape[0], self.channels, self.max_length + 1)
        return self.out(self.norm(self.blocks(h).transpose(1, 2)))

    def loss(
        self, z: Tensor, batch: Batch, *, t: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``{"nll": [B]}``: −log p(x0 | z) per example, the cross-entropy averaged over its residues and
        ``<eos>``. ``t`` (the shared timestep) and ``generator`` are not used: the decoder is not noisy."""
        tokens: Tensor = batch["tokens"]
        if tokens.shape[1] != self.max_length + 1:
            raise ValueError(
                f"ConvDecoder was built for max_length={self.max_length} ({self.max_length + 1} positions) "
                f"but the batch has {tokens.shape[1]} positions; set decoder max_length to the data's "
                "max_length."
            )
        target = self.to_class[tokens]  # pad -> -100 (ignored)
        ce = F.cross_entropy(self.logits(z).transpose(1, 2), target, reduction="none")  # [B, L]
        real = target.ne(-100)
        return {"nll": (ce * real).sum(1) / real.sum(1).clamp_min(1)}

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        *,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Batch:
        """Greedy decode of ``z [B, d]``: ``{"tokens": [B, max_length + 1], "mask": [B, max_length + 1]}``
        (``mask``: residue positions). Deterministic, so ``batch`` and ``generator`` are not used; there
        are no decoding options."""
        if options:
            raise ValueError(
                f"ConvDecoder takes no decoding options (got {', '.join(sorted(options))}); "
                "remove them from --prediction.decode."
            )
        tokens = self.to_token[self.logits(z).argmax(-1)]
        end = tokens.eq(self.eos_idx)
        end[:, -1] = True
        length = end.int().argmax(1, keepdim=True)  # first <eos>
        pos = torch.arange(tokens.shape[1], device=z.device).expand_as(tokens)
        tokens = torch.where(pos < length, tokens, torch.full_like(tokens, self.pad_idx))
        tokens = torch.where(pos == length, torch.full_like(tokens, self.eos_idx), tokens)
        return {"tokens": tokens, "mask": pos < length}
