"""The latent denoiser ε_θ(x_t, t) and the default auxiliary head (method.md §4-5).

:class:`SkipMLP` is the DiffAE latent-DDIM network the paper uses: an MLP whose every layer sees the
input concatenated to its hidden state (skip connections), LayerNorm + SiLU, and a time embedding of
t/T that scales the hidden state of every layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .contract import AuxHead, Batch

__all__ = ["RegressionHead", "SkipMLP", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of a float time ``t`` ``[B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


class _Layer(nn.Module):
    def __init__(self, in_dim: int, width: int, time_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, width)
        self.time = nn.Linear(time_dim, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        return nn.functional.silu(self.norm(self.linear(h) * (1 + self.time(temb))))


class SkipMLP(nn.Module):
    """ε_θ(x_t, t) for vector latents.

    Args:
        latent_dim: d (filled in by :class:`~diled_core.DiLED` from the encoder).
        width: hidden width (paper: 2048).
        depth: number of hidden layers (paper: 10-20).
        time_dim: size of the time embedding.
        align: the skip input ``[h, x]`` (width + d columns) is padded with zero columns to a multiple
            of ``align``; their weights start at zero and get no gradient, and the other weights start as
            without padding, so training is the same up to float rounding.
            CPU matmuls are faster at aligned sizes: at the paper's protein size (2048 + 30 = 2078
            -> 2080) the denoiser's forward + backward took 0.88x the unpadded time on 2 cores
            (``benchmarks/training_cost.py`` ablates it). ``1`` pads nothing. Weights saved unpadded
            (``align: 1``, or before this option) load into a padded net, zero columns added.
    """

    def __init__(
        self, latent_dim: int, width: int = 2048, depth: int = 10, time_dim: int = 64, align: int = 16
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1 or align < 1:
            raise ValueError(
                f"SkipMLP needs depth >= 1, width >= 1 and align >= 1 (got depth={depth}, width={width}, "
                f"align={align})"
            )
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, time_dim))
        self.time_dim = time_dim
        dims = [latent_dim] + [width + latent_dim] * (depth - 1)
        self.layers = nn.ModuleList(_Layer(d, width, time_dim) for d in dims)
        self.out = nn.Linear(width + latent_dim, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # padded after the initialisation, so that every align draws the same initial weights
        self.pad = -(width + latent_dim) % align
        for linear in [layer.linear for layer in self.layers[1:]] + [self.out] if self.pad else []:
            linear.weight = nn.Parameter(nn.functional.pad(linear.weight.detach(), (0, self.pad)))
            linear.in_features += self.pad

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # called before the layers load theirs: unpadded skip weights get their zero columns here
        unpadded = self.out.in_features - self.pad
        for name in [f"layers.{i}.linear.weight" for i in range(1, len(self.layers))] + ["out.weight"]:
            value = state_dict.get(prefix + name)
            if self.pad and value is not None and value.dim() == 2 and value.shape[1] == unpadded:
                state_dict[prefix + name] = nn.functional.pad(value, (0, self.pad))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        """x ``[B, d]``, time t/T ``[B]`` in (0, 1] -> ε̂ ``[B, d]``."""
        temb = self.time_mlp(timestep_embedding(time * 1000.0, self.time_dim))
        h = self.layers[0](x, temb)
        skip = nn.functional.pad(x, (0, self.pad)) if self.pad else x
        for layer in self.layers[1:]:
            h = layer(torch.cat([h, skip], dim=-1), temb)
        return self.out(torch.cat([h, skip], dim=-1))


class RegressionHead(AuxHead):
    """A property regressor on μ (paper: 30 -> 64 -> 1), MSE on ``batch[target]``.

    Examples whose ``batch[target + "_mask"]`` is 0 or whose target is NaN (unlabelled) contribute no loss.
    """

    def __init__(self, latent_dim: int, hidden: int = 64, target: str = "property") -> None:
        super().__init__()
        self.target = target
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, mu: Tensor) -> Tensor:
        return self.net(mu).squeeze(-1)

    def loss(self, mu: Tensor, batch: Batch) -> Tensor:
        if self.target not in batch:
            raise KeyError(
                f"RegressionHead needs the batch key {self.target!r}, but the batch has {sorted(batch)}; "
                f"set head.init_args.target to one of them or remove the head from the config"
            )
        y = batch[self.target].to(mu.dtype)
        mask = batch.get(f"{self.target}_mask", torch.ones_like(y)).to(mu.dtype) * (~y.isnan()).to(mu.dtype)
        return mask * (self(mu) - torch.nan_to_num(y)) ** 2
