"""Latent health statistics (method.md §3, "Failure mode to watch").

Joint training can shrink or collapse the latent; these running statistics of μ over an epoch tell:
per-dimension standard deviation across examples, the mean norm ‖μ‖, and the number of active units
(dimensions whose variance across examples exceeds ``threshold``, Burda et al. 2016).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["LatentStats"]


class LatentStats:
    """Running sums of μ over an epoch; :meth:`compute` returns the statistics and resets."""

    def __init__(self, threshold: float = 0.01) -> None:
        self.threshold = threshold
        self._sums: Tensor | None = None  # [3, d]: Σμ, Σμ², and (row 2, col 0) count, (row 2, col 1) Σ‖μ‖

    def update(self, mu: Tensor) -> None:
        mu = mu.detach().float().flatten(1)
        row = torch.zeros_like(mu[0])
        row[0], row[1] = mu.shape[0], mu.norm(dim=1).sum()
        sums = torch.stack([mu.sum(0), (mu**2).sum(0), row])
        self._sums = sums if self._sums is None else self._sums + sums

    def compute(self, reduce: Callable[[Tensor], Tensor] = lambda x: x) -> dict[str, float]:
        """Statistics over everything seen since the last call; ``reduce`` sums across processes."""
        if self._sums is None:
            return {}
        sums, self._sums = reduce(self._sums), None
        n = sums[2, 0].clamp(min=1)
        mean = sums[0] / n
        var = (sums[1] / n - mean**2).clamp(min=0) * n / (n - 1).clamp(min=1)
        std = var.sqrt()
        return {
            "std_mean": std.mean().item(),
            "std_min": std.min().item(),
            "std_max": std.max().item(),
            "norm_mean": (sums[2, 1] / n).item(),
            "active_units": float((var > self.threshold).sum().item()),
        }
