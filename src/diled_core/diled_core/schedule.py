"""Noise schedules and their coefficients (method.md §2).

One consistent indexing: timesteps are t = 1 … T and every coefficient tensor has length T + 1 with
index 0 standing for "no noise" (β_0 = 0, ᾱ_0 = 1), so ``schedule.alphas_cumprod[t]`` is ᾱ_t.
Coefficients are computed once in float64 and registered as float32 buffers, so they follow the
module across devices and precisions (lucidrains/denoising-diffusion-pytorch does the same).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["NoiseSchedule", "ScheduleKind", "make_betas"]

ScheduleKind = Literal[
    "constant",  # β_t = beta for all t (the paper's default, 0.008; the DiffAE latent schedule)
    "linear",  # β_t linear from beta_start to beta_end (DDPM, rescaled to T)
    "cosine",  # Nichol & Dhariwal 2021, β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped at 0.999
]


def make_betas(
    kind: ScheduleKind,
    timesteps: int,
    beta: float = 0.008,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> Tensor:
    """β_1 … β_T as a float64 tensor of shape ``[T]``."""
    if timesteps < 2:
        raise ValueError(f"timesteps must be >= 2 (got {timesteps}): the latent chain needs x_1 and x_T")
    if kind == "constant":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"constant schedule needs 0 < beta < 1 (got {beta})")
        return torch.full((timesteps,), beta, dtype=torch.float64)
    if kind == "linear":
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(
                f"linear schedule needs 0 < beta_start <= beta_end < 1 (got {beta_start}, {beta_end})"
            )
        scale = 1000.0 / timesteps  # keep the total noise of DDPM's 1000-step schedule
        return torch.linspace(
            scale * beta_start, min(scale * beta_end, 0.999), timesteps, dtype=torch.float64
        )
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown schedule {kind!r}; choose one of: constant, linear, cosine")


class NoiseSchedule(nn.Module):
    """The coefficients of a Gaussian diffusion over latents, indexed t = 0 … T.

    Buffers (each ``[T + 1]``, float32): ``betas``, ``alphas``, ``alphas_cumprod`` (ᾱ_t),
    ``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``, ``posterior_variance``
    (β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), with β̃_1 = β_1), and ``lambdas`` (λ_t of method.md §3,
    the KL weight of ‖ε − ε_θ‖² with σ_t² = β̃_t; λ_0 = λ_1 = 0 since L_1 is the decoder term).
    """

    def __init__(
        self,
        kind: ScheduleKind = "constant",
        timesteps: int = 1000,
        beta: float = 0.008,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        super().__init__()
        self.kind, self.timesteps = kind, timesteps
        betas = torch.cat(
            [torch.zeros(1, dtype=torch.float64), make_betas(kind, timesteps, beta, beta_start, beta_end)]
        )
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)  # abar[0] = 1
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        post_var = torch.where(
            torch.arange(timesteps + 1) >= 2, betas * (1 - abar_prev) / (1 - abar).clamp(min=1e-20), betas
        )
        lambdas = torch.zeros_like(betas)
        t = slice(2, None)
        lambdas[t] = betas[t] ** 2 / (2 * post_var[t] * alphas[t] * (1 - abar[t]))
        for name, value in {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": abar,
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "posterior_variance": post_var,
            "lambdas": lambdas,
        }.items():
            self.register_buffer(name, value.float(), persistent=False)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, timesteps={self.timesteps}"

    @staticmethod
    def gather(coef: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``coef[t]`` reshaped to broadcast against ``like`` ([B] -> [B, 1, …]), in ``like``'s dtype."""
        return coef[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))
