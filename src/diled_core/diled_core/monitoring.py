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
        self._sums: Tensor | None = None  # flat [2d + 2]: Σμ, Σμ², count, Σ‖μ‖ (one tensor to reduce)

    def update(self, mu: Tensor) -> None:
        mu = mu.detach().float().flatten(1)
        extra = torch.stack([mu.new_tensor(float(mu.shape[0])), mu.norm(dim=1).sum()])
        sums = torch.cat([mu.sum(0), (mu**2).sum(0), extra])
        self._sums = sums if self._sums is None else self._sums + sums

    def compute(self, reduce: Callable[[Tensor], Tensor] = lambda x: x) -> dict[str, float]:
        """Statistics over everything seen since the last call; ``reduce`` sums across processes."""
        if self._sums is None:
            return {}
        sums, self._sums = reduce(self._sums), None
        d = (sums.numel() - 2) // 2
        n, norm_sum = sums[2 * d].clamp(min=1), sums[2 * d + 1]
        mean = sums[:d] / n
        var = (sums[d : 2 * d] / n - mean**2).clamp(min=0) * n / (n - 1).clamp(min=1)
        std = var.sqrt()
        return {
            "std_mean": std.mean().item(),
            "std_min": std.min().item(),
            "std_max": std.max().item(),
            "norm_mean": (norm_sum / n).item(),
            "active_units": float((var > self.threshold).sum().item()),
        }
