"""The forward process and the per-example terms of the DiLED objective (method.md §2-3).

Plain functions of tensors: no Lightning, no reduction over the batch. Every loss term comes back as a
``[B]`` vector; :func:`diled_core.objective.objective` is the one place they are weighted and reduced.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from .schedule import NoiseSchedule

__all__ = [
    "EpsModel",
    "RecWeighting",
    "diffusion_mse",
    "q_sample",
    "rec_weight",
    "sample_timesteps",
]

#: ``(x_t [B, d], t [B] long) -> ε̂ [B, d]``
EpsModel = Callable[[Tensor, Tensor], Tensor]
RecWeighting = Literal[
    "elbo_split",  # L_rec / ((T − 1) λ_t): the paper's "split L_rec into T parts" (default)
    "uniform",  # weight 1 (ablation)
]


def q_sample(schedule: NoiseSchedule, mu: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = √ᾱ_t μ + √(1 − ᾱ_t) ε, the closed form of q(x_t | x0) for t = 1 … T."""
    return (
        schedule.gather(schedule.sqrt_alphas_cumprod, t, mu) * mu
        + schedule.gather(schedule.sqrt_one_minus_alphas_cumprod, t, mu) * noise
    )


def sample_timesteps(
    schedule: NoiseSchedule, batch: int, device: torch.device, generator=None, *, low: int = 2
) -> Tensor:
    """t ~ U{low … T}, shape ``[B]``. ``low = 2`` for a likelihood decoder (t = 1 is the decoder's
    step); ``low = 1`` when the decoder is itself a diffusion model sharing t (method.md §3)."""
    if low not in (1, 2):
        raise ValueError(f"low must be 1 or 2 (got {low})")
    return torch.randint(low, schedule.timesteps + 1, (batch,), device=device, generator=generator)


def diffusion_mse(
    eps_model: EpsModel, schedule: NoiseSchedule, mu: Tensor, t: Tensor, noise: Tensor
) -> Tensor:
    """mean_d (ε − ε_θ(x_t, t))², shape ``[B]``; gradients reach μ through x_t."""
    x_t = q_sample(schedule, mu, t, noise)
    err = (noise - eps_model(x_t, t)) ** 2
    return err.flatten(1).mean(dim=1)


def rec_weight(schedule: NoiseSchedule, t: Tensor, weighting: RecWeighting) -> Tensor:
    """Per-example weight of L_rec, ``[B]``: 1 / ((T − 1) λ_t) for ``elbo_split`` or 1 for ``uniform``."""
    if weighting == "uniform":
        return torch.ones(t.shape, device=t.device)
    if weighting == "elbo_split":
        return 1.0 / ((schedule.timesteps - 1) * schedule.lambdas[t])
    raise ValueError(f"unknown rec_weighting {weighting!r}; choose elbo_split or uniform")
