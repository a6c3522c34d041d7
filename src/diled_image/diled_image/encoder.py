"""The semantic encoder: image -> μ (DiffAE's "semantic encoder", Preechakul et al. 2022, §3.1).

A half UNet: a 3×3 stem, then per resolution level ``num_res_blocks`` ResNet blocks (GroupNorm + SiLU)
and a strided-conv downsample, then GroupNorm + SiLU, global average pooling and a linear map to the
latent. GroupNorm normalises each example on its own inside the network. The latent itself is
standardised per dimension over the data (:class:`diled_core.LatentNorm`), which keeps joint training from
collapsing it (see :class:`SemanticEncoder`).
"""

from __future__ import annotations

from typing import Sequence

from diled_core import Batch, Encoder
from diled_core.latent_norm import Normalize, latent_norm
from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import Downsample, ResBlock, group_norm

__all__ = ["SemanticEncoder", "check_levels"]


def check_levels(owner: str, image_size: int, levels: int) -> None:
    """Raise if ``image_size`` cannot be halved ``levels − 1`` times (each down/up level halves it)."""
    factor = 2 ** (levels - 1)
    if image_size % factor:
        raise ValueError(
            f"{owner}: image_size={image_size} is not divisible by {factor}, which its {levels} resolution "
            "levels (len(channel_mults)) need; use fewer channel_mults or an image_size divisible by "
            f"{factor} "
            "(e.g. pad or resize the data)."
        )


class SemanticEncoder(Encoder):
    """``batch["image"]`` ``[B, channels, image_size, image_size]`` in [-1, 1] -> μ ``[B, latent_dim]``.

    Args:
        channels, image_size: of the images (from the data).
        latent_dim: d (paper: 512).
        base_channels: width of the first level; level i has ``base_channels · channel_mults[i]``.
        channel_mults: one entry per resolution level (each level after the first halves the size).
        num_res_blocks: ResNet blocks per level.
        dropout: inside the ResNet blocks.
        normalize: ``batch`` (default): standardise each latent dimension over the data
            (:class:`diled_core.LatentNorm`: batch statistics in training, running ones in eval
            mode), so μ has the N(0, I) prior's per-dimension scale; ``whiten``: also decorrelate
            the dimensions within groups of 16 (:class:`diled_core.GroupWhiten`); ``example``: standardise each μ
            over its own dimensions (‖μ‖ = √d); ``none``. Joint training rewards latents that are
            easy to denoise: the latent ε-MSE shrinks with the spread of μ across examples, while the
            decoder can undo any scale. With ``example`` a Fashion-MNIST run mapped every image to
            nearly the same point (per-dimension std across images 0.18 at the start, 0.008 after 192
            steps, far below the 0.09 noise of x1, and the pixel decoder ignored z): the collapse of
            method.md §3. ``batch`` rules that out. It does not make μ use many directions: early in
            training a UNet decoder reads few of them (192 steps gave a participation ratio of
            1.1–1.3 of 64, with or without the latent term).
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 64,
        latent_dim: int = 512,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4, 8),
        num_res_blocks: int = 2,
        dropout: float = 0.0,
        normalize: Normalize = "batch",
    ) -> None:
        super().__init__()
        check_levels("SemanticEncoder", image_size, len(channel_mults))
        self.channels, self.image_size, self.latent_dim = channels, image_size, latent_dim
        self.stem = nn.Conv2d(channels, base_channels, 3, padding=1)
        blocks: list[nn.Module] = []
        ch = base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, base_channels * mult, dropout=dropout))
                ch = base_channels * mult
            if level < len(channel_mults) - 1:
                blocks.append(Downsample(ch))
        self.blocks = nn.Sequential(*blocks)
        self.norm = group_norm(ch)
        self.proj = nn.Linear(ch, latent_dim)
        self.out_norm = latent_norm(normalize, latent_dim, "SemanticEncoder")

    def forward(self, batch: Batch) -> Tensor:
        h = self.blocks(self.stem(batch["image"]))
        return self.out_norm(self.proj(F.silu(self.norm(h)).mean(dim=(2, 3))))
