"""The forward process and the per-example terms of the DiLED objective (method.md §2-3).

Plain functions of tensors: no Lightning, no reduction over the batch. Every loss term comes back as a
``[B]`` vector; :func:`combine_terms` is the one place they are weighted and reduced.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from .schedule import NoiseSchedule

__all__ = [
    "EpsModel",
    "RecWeighting",
    "Training",
    "combine_terms",
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
Training = Literal[
    "joint",  # DiLED: encoder, decoder and denoiser trained together, all terms reach the encoder
    "two_stage",  # autoencoder first, then frozen encoder + latent diffusion (LDM / DiffAE recipe)
    "autoencoder",  # no diffusion term at all
]


def q_sample(schedule: NoiseSchedule, mu: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = √ᾱ_t μ + √(1 − ᾱ_t) ε, the closed form of q(x_t | x0) for t = 1 … T."""
    return (
        schedule.gather(schedule.sqrt_alphas_cumprod, t, mu) * mu
        + schedule.gather(schedule.sqrt_one_minus_alphas_cumprod, t, mu) * noise
    )


def sample_timesteps(schedule: NoiseSchedule, batch: int, device: torch.device, generator=None) -> Tensor:
    """t ~ U{2 … T}, shape ``[B]`` (t = 1 is the decoder's step)."""
    return torch.randint(2, schedule.timesteps + 1, (batch,), device=device, generator=generator)


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


def combine_terms(terms: dict[str, Tensor], weights: dict[str, Tensor | float]) -> Tensor:
    """Σ_k mean_B(weight_k · term_k): the scalar training loss from per-example ``[B]`` terms."""
    total = torch.zeros((), device=next(iter(terms.values())).device)
    for name, weight in weights.items():
        total = total + (weight * terms[name].float()).mean()
    return total
