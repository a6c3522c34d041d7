"""Interpolation between latents (method.md §4): spherical (for Gaussian codes such as x_T) and linear."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["lerp", "slerp"]


def slerp(a: Tensor, b: Tensor, alpha: Tensor) -> Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` ``[P, d]`` at ``alpha`` ``[n]`` -> ``[P, n, d]``."""
    cos = (nn.functional.normalize(a, dim=-1) * nn.functional.normalize(b, dim=-1)).sum(-1).clamp(-1, 1)
    theta = cos.acos()[:, None, None]  # [P, 1, 1]
    al = alpha.to(a)[None, :, None]
    small = theta.abs() < 1e-4  # nearly parallel: lerp is exact enough and avoids 0/0
    sin = theta.sin().clamp(min=1e-8)
    wa = torch.where(small, 1 - al, ((1 - al) * theta).sin() / sin)
    wb = torch.where(small, al, (al * theta).sin() / sin)
    return wa * a[:, None] + wb * b[:, None]


def lerp(a: Tensor, b: Tensor, alpha: Tensor) -> Tensor:
    """Linear interpolation between rows of ``a`` and ``b`` ``[P, d]`` at ``alpha`` ``[n]`` -> ``[P, n, d]``."""
    al = alpha.to(a)[None, :, None]
    return a[:, None] + al * (b - a)[:, None]
