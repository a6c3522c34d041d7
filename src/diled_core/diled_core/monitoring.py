"""Latent health statistics (method.md §3, "Failure mode to watch").

Joint training can shrink or collapse the latent; these running statistics of μ over an epoch tell:
per-dimension standard deviation across examples, the mean norm ‖μ‖, the number of active units
(dimensions whose variance across examples exceeds ``threshold``, Burda et al. 2016) and the effective
rank of μ's covariance (exp of the entropy of its normalised eigenvalues, Roy & Vetterli 2007; 1 when
every μ lies on one line, d when the variance is spread evenly). Active units miss a collapse onto a
line when the encoder standardises each dimension: every unit stays active and the rank falls to 1.

:func:`latent_fd` says whether the latent diffusion has learned the latents it must generate: the Fréchet
distance between sampled x_1 and q(x_1 | μ) of real data, both in the latent space itself (no feature
network). Its finite-sample floor is :func:`latent_fd` between two sets of real latents of the same size.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["LatentStats", "frechet_distance", "latent_fd"]


class LatentStats:
    """Running sums of μ over an epoch; :meth:`compute` returns the statistics and resets."""

    #: latents wider than this skip the effective rank (its d × d sums)
    max_rank_dim = 1024

    def __init__(self, threshold: float = 0.01) -> None:
        self.threshold = threshold
        # flat, one tensor to reduce: Σμ [d], Σμ² [d], count, Σ‖μ‖, then Σμμᵀ [d²] (d ≤ max_rank_dim)
        self._sums: Tensor | None = None
        self._dim = 0

    def update(self, mu: Tensor) -> None:
        mu = mu.detach().float().flatten(1)
        extra = torch.stack([mu.new_tensor(float(mu.shape[0])), mu.norm(dim=1).sum()])
        outer = (mu.T @ mu).flatten() if mu.shape[1] <= self.max_rank_dim else mu.new_zeros(0)
        sums = torch.cat([mu.sum(0), (mu**2).sum(0), extra, outer])
        self._dim = mu.shape[1]
        self._sums = sums if self._sums is None else self._sums + sums

    def compute(self, reduce: Callable[[Tensor], Tensor] = lambda x: x) -> dict[str, float]:
        """Statistics over everything seen since the last call; ``reduce`` sums across processes."""
        if self._sums is None:
            return {}
        sums, self._sums = reduce(self._sums), None
        d = self._dim
        n, norm_sum = sums[2 * d].clamp(min=1), sums[2 * d + 1]
        mean = sums[:d] / n
        var = (sums[d : 2 * d] / n - mean**2).clamp(min=0) * n / (n - 1).clamp(min=1)
        std = var.sqrt()
        stats = {
            "std_mean": std.mean().item(),
            "std_min": std.min().item(),
            "std_max": std.max().item(),
            "norm_mean": (norm_sum / n).item(),
            "active_units": float((var > self.threshold).sum().item()),
        }
        if sums.numel() > 2 * d + 2:
            second = sums[2 * d + 2 :].view(d, d).double() / n
            stats["effective_rank"] = effective_rank(second - torch.outer(mean, mean).double())
        return stats


def effective_rank(cov: Tensor) -> float:
    """exp(entropy of the normalised eigenvalues) of a covariance matrix; 0 for a zero matrix."""
    eig = torch.linalg.eigvalsh(cov).clamp(min=0)
    if eig.sum() <= 0:
        return 0.0
    p = eig / eig.sum()
    return float(torch.exp(-(p * p.clamp(min=1e-300).log()).sum()))


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1 Σ2) (tr √ from the eigenvalues of Σ1 Σ2, as torchmetrics)."""
    eig = torch.linalg.eigvals(cov1 @ cov2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * eig)


def latent_fd(a: Tensor, b: Tensor) -> float:
    """The Fréchet distance between two sets of latents ``[n, d]`` (Gaussian fits, float64)."""
    if min(len(a), len(b)) < 2:
        raise ValueError(f"latent_fd needs at least 2 latents per set (got {len(a)} and {len(b)})")
    a, b = a.flatten(1).double(), b.flatten(1).double()
    return frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))
