"""Samplers over the latent chain x_T … x_1 (method.md §4).

Short ``@torch.no_grad()`` functions with one shared signature
``sampler(eps_model, schedule, x, *, generator=None, guidance=None, guidance_scale=1.0, ...)``
(k-diffusion style), each numbered after its paper's equations:

* :func:`ddpm_sample`: DDPM ancestral sampling (Ho et al. 2020, Alg. 2) for t = T … 2, returning x_1;
* :func:`ddim_sample`: DDIM (Song et al. 2021, Eq. 12) on any sub-grid of {2 … T}, η ∈ [0, 1],
  ending at t = 1; with η = 1 and T − 1 steps it is DDPM with the posterior variance;
* :func:`ddim_invert`: deterministic DDIM inversion x_1 -> x_T (η = 0, run upwards).

Each chain's state is kept in float32 or wider whatever the dtype of the ``x`` given (a bf16 latent from
an encoder under autocast, say): in bf16, 1 − ᾱ_t rounds to 0 at small t and DDIM divides by it. The
networks themselves may still run under autocast.

Guidance (classifier / property-regressor guidance, Dhariwal & Nichol 2021 Eq. 14):
ε̂ ← ε̂ − √(1 − ᾱ_t) · s · ∇_{x_t} log p(y | x_t).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .diffusion import EpsModel
from .contract import Guidance
from .schedule import NoiseSchedule

__all__ = ["Sampler", "at_least_fp32", "ddim_invert", "ddim_sample", "ddim_timesteps", "ddpm_sample"]

Sampler = Literal["ddim", "ddpm"]


def at_least_fp32(x: Tensor) -> Tensor:
    """``x`` in float32, or as it is when wider (float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _full(x: Tensor, t: int) -> Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


def _eps(eps_model: EpsModel, schedule: NoiseSchedule, x: Tensor, t: int, guidance, scale: float) -> Tensor:
    tt = _full(x, t)
    eps = eps_model(x, tt)
    if guidance is not None:
        with torch.inference_mode(False), torch.enable_grad():  # also inside Trainer.predict
            grad = guidance(x.detach().clone().requires_grad_(True), tt.clone())
        eps = eps - schedule.sqrt_one_minus_alphas_cumprod[t].to(x.dtype) * scale * grad.to(x.dtype)
    return eps


def ddim_timesteps(timesteps: int, steps: int, low: int = 2) -> list[int]:
    """The ``steps`` timesteps where ε_θ is evaluated, descending from T, evenly spaced over {low … T}
    (``low = 2`` for the latent chain, which ends at x_1; ``low = 1`` for a chain that ends at x_0)."""
    if not 1 <= steps <= timesteps - low + 1:
        raise ValueError(
            f"steps must be in 1 … {timesteps - low + 1} for a {timesteps}-step schedule (got {steps})"
        )
    grid = torch.linspace(timesteps, low, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(grid), reverse=True)


@torch.no_grad()
def ddpm_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x: Tensor,
    *,
    generator: torch.Generator | None = None,
    guidance: Guidance | None = None,
    guidance_scale: float = 1.0,
) -> Tensor:
    """Ancestral sampling x_T -> x_1 with σ_t² = β̃_t (T − 1 network calls)."""
    x = at_least_fp32(x)
    for t in range(schedule.timesteps, 1, -1):
        eps = _eps(eps_model, schedule, x, t, guidance, guidance_scale)
        beta, alpha = schedule.betas[t].to(x.dtype), schedule.alphas[t].to(x.dtype)
        mean = (x - beta / schedule.sqrt_one_minus_alphas_cumprod[t].to(x.dtype) * eps) / alpha.sqrt()
        x = mean + schedule.posterior_variance[t].to(x.dtype).sqrt() * _randn(x, generator)
    return x


@torch.no_grad()
def ddim_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x: Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    guidance: Guidance | None = None,
    guidance_scale: float = 1.0,
    end: int = 1,
) -> Tensor:
    """DDIM x_T -> x_end in ``steps`` network calls; η = 0 is deterministic. ``end = 1`` for the latent
    chain (x_1 goes to the decoder); ``end = 0`` for a decoder's own chain down to the data."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (got {eta})")
    grid = ddim_timesteps(schedule.timesteps, steps, low=end + 1)
    x = at_least_fp32(x)
    abar = schedule.alphas_cumprod.to(x.dtype)
    for t, t_prev in zip(grid, grid[1:] + [end]):
        eps = _eps(eps_model, schedule, x, t, guidance, guidance_scale)
        x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        sigma = eta * ((1 - abar[t_prev]) / (1 - abar[t]) * (1 - abar[t] / abar[t_prev])).sqrt()
        x = abar[t_prev].sqrt() * x0 + (1 - abar[t_prev] - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x = x + sigma * _randn(x, generator)
    return x


@torch.no_grad()
def ddim_invert(
    eps_model: EpsModel, schedule: NoiseSchedule, x: Tensor, *, steps: int = 50, start: int = 1
) -> Tensor:
    """Deterministic DDIM inversion x_start -> x_T on the same grid as :func:`ddim_sample` with
    ``end = start``; the round trip returns x_start up to an error that shrinks with ``steps``.
    The first step uses ε at its target timestep (as diffusers' ``DDIMInverseScheduler`` does)."""
    grid = [start] + ddim_timesteps(schedule.timesteps, steps, low=start + 1)[::-1]
    x = at_least_fp32(x)
    abar = schedule.alphas_cumprod.to(x.dtype)
    for t, t_next in zip(grid[:-1], grid[1:]):
        # ε at x_start is taken at the next step: the model never trains at t = start
        eps = eps_model(x, _full(x, t if t > start else t_next))
        x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        x = abar[t_next].sqrt() * x0 + (1 - abar[t_next]).sqrt() * eps
    return x
