"""The conditional UNet ε_φ(x_s, s, z) of the diffusion decoder (DiffAE, Preechakul et al. 2022, §3.2;
the UNet of improved-diffusion, Nichol & Dhariwal 2021).

Down path: a 3×3 stem, per level ``num_res_blocks`` AdaGN ResNet blocks (self-attention at the sizes in
``attention_resolutions``) and a downsample; a middle block; an up path mirroring it with skip
connections; GroupNorm + SiLU + a 3×3 conv to ε. Every ResNet block is conditioned on
the timestep (sinusoidal embedding -> MLP, scale and shift) and on the latent z (a scale), see
:class:`~diled_image.blocks.ResBlock`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .blocks import AttentionBlock, Downsample, ResBlock, Upsample, group_norm, sinusoidal_embedding
from .encoder import check_levels

__all__ = ["ConditionalUNet"]


class _Level(nn.Module):
    """One ResNet block (+ attention) of a UNet path; ``forward(h, emb, z)``."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, cond_dim: int, attention: bool, dropout: float):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, cond_dim, dropout)
        self.attn = AttentionBlock(out_ch) if attention else nn.Identity()

    def forward(self, h: Tensor, emb: Tensor, z: Tensor) -> Tensor:
        return self.attn(self.res(h, emb, z))


class ConditionalUNet(nn.Module):
    """ε_φ(x_s ``[B, C, H, W]``, s ``[B]`` float, z ``[B, latent_dim]``) -> ε̂ ``[B, C, H, W]``.

    Args:
        channels, image_size, latent_dim: sizes of the data and the latent.
        base_channels, channel_mults, num_res_blocks: widths (level i: ``base · mults[i]``) and depth.
        attention_resolutions: feature-map sizes (e.g. ``[16]``) that get self-attention.
        dropout: inside the ResNet blocks.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_dim: int,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_levels("ConditionalUNet", image_size, len(channel_mults))
        emb = 4 * base_channels
        self.base_channels = base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = nn.Conv2d(channels, base_channels, 3, padding=1)

        self.down, skips = nn.ModuleList(), [base_channels]
        ch, size = base_channels, image_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                attn = size in attention_resolutions
                self.down.append(_Level(ch, base_channels * mult, emb, latent_dim, attn, dropout))
                ch = base_channels * mult
                skips.append(ch)
            if level < len(channel_mults) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
                size //= 2
        self.mid = nn.ModuleList(
            [_Level(ch, ch, emb, latent_dim, True, dropout), _Level(ch, ch, emb, latent_dim, False, dropout)]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                out = base_channels * mult
                attn = size in attention_resolutions
                self.up.append(_Level(ch + skips.pop(), out, emb, latent_dim, attn, dropout))
                ch = out
            if level > 0:
                self.up.append(Upsample(ch))
                size *= 2
        self.norm, self.out = group_norm(ch), nn.Conv2d(ch, channels, 3, padding=1)

    def forward(self, x: Tensor, s: Tensor, z: Tensor) -> Tensor:
        emb = self.time_mlp(sinusoidal_embedding(s, self.base_channels))
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, emb, z) if isinstance(layer, _Level) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb, z)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb, z) if isinstance(layer, _Level) else layer(h)
        return self.out(F.silu(self.norm(h)))
