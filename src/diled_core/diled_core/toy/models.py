"""Toy encoder and decoder: small MLPs over vectors (Gaussian decoder with fixed variance)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..contract import Batch, Decoder, Encoder

__all__ = ["ToyDecoder", "ToyEncoder"]


def _mlp(i: int, hidden: int, o: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(i, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, o)
    )


class ToyEncoder(Encoder):
    """``batch["x"]`` [B, dim] -> μ [B, latent_dim]."""

    def __init__(self, dim: int = 8, latent_dim: int = 4, hidden: int = 128) -> None:
        super().__init__()
        self.dim, self.latent_dim = dim, latent_dim
        self.net = _mlp(dim, hidden, latent_dim)

    def forward(self, batch: Batch) -> Tensor:
        return self.net(batch["x"])


class ToyDecoder(Decoder):
    """p(x | z) = N(f(z), σ² I); the loss term ``nll`` is the per-example Gaussian NLL per dimension
    (constants dropped). Decoding takes no options."""

    def __init__(self, dim: int = 8, latent_dim: int = 4, hidden: int = 128, sigma: float = 0.1) -> None:
        super().__init__()
        self.dim, self.latent_dim, self.sigma = dim, latent_dim, sigma
        self.net = _mlp(latent_dim, hidden, dim)

    def loss(self, z: Tensor, batch: Batch, *, t: Tensor, generator=None) -> dict[str, Tensor]:
        return {"nll": ((self.net(z) - batch["x"]) ** 2).mean(dim=1) / (2 * self.sigma**2)}

    def decode(self, z: Tensor, *, batch=None, generator: torch.Generator | None = None, **options) -> Batch:
        if options:
            raise ValueError(f"ToyDecoder takes no decoding options (got {sorted(options)})")
        return {"x": self.net(z)}
