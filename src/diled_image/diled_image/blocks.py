"""Building blocks of the image networks (DiffAE / improved-diffusion style, Preechakul et al. 2022).

:class:`ResBlock` is GroupNorm → SiLU → conv, twice, with a residual path. With a timestep embedding
and a latent it is the DiffAE block with adaptive group norm (AdaGN):
``h = (1 + z_s) · ((1 + t_s) · GN(h) + t_b)``, scale/shift ``t_s, t_b`` from the timestep embedding and
``z_s`` from the latent z. Without them (the encoder) it is a plain pre-activation ResNet block.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["AttentionBlock", "Downsample", "ResBlock", "Upsample", "group_norm", "sinusoidal_embedding"]


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels``."""
    groups = math.gcd(32, channels)
    return nn.GroupNorm(groups, channels)


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style embedding of float times ``t`` ``[B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return F.pad(torch.cat([torch.cos(args), torch.sin(args)], dim=-1), (0, dim % 2))


class ResBlock(nn.Module):
    """``[B, in_ch, H, W]`` -> ``[B, out_ch, H, W]``, optionally conditioned (AdaGN).

    Args:
        emb_dim: size of the timestep embedding (``None``: unconditioned).
        cond_dim: size of the latent z (``None``: no latent conditioning).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        emb_dim: int | None = None,
        cond_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = group_norm(out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(emb_dim, 2 * out_ch) if emb_dim is not None else None
        self.cond = nn.Linear(cond_dim, out_ch) if cond_dim is not None else None
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.time is not None and emb is not None:
            scale, shift = self.time(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        if self.cond is not None and z is not None:
            h = h * (1 + self.cond(z)[:, :, None, None])
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels, ``[B, C, H, W]`` -> same (residual)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm, self.qkv, self.out = (
            group_norm(channels),
            nn.Conv2d(channels, 3 * channels, 1),
            nn.Conv2d(channels, channels, 1),
        )
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        attn = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return x + self.out(attn.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Strided 3×3 conv, ``[B, C, H, W]`` -> ``[B, C, H/2, W/2]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2 then 3×3 conv, ``[B, C, H, W]`` -> ``[B, C, 2H, 2W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
