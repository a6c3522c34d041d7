"""The DiLED training objective in one Lightning-free function (method.md §3).

Per example, with μ = E(x0), ε, ε′ ~ N(0, I), x_t = √ᾱ_t μ + √(1 − ᾱ_t) ε and the decoder's input
x1 = √ᾱ_1 μ + √(1 − ᾱ_1) ε′:

* likelihood decoder, t ~ U{2 … T}:  ``L_dec / ((T − 1) λ_t) + w · mean_d (ε − ε_θ(x_t, t))²``
  (the ELBO with L_rec split over the T − 1 diffusion terms; ``rec_weighting="uniform"``: weight 1);
* diffusion decoder, t ~ U{1 … T}, one shared t:  ``w · L_latent + (2 − w) · L_dec``;
* plus ``head_weight · L_head`` for an auxiliary head on μ.

With ``latent_draws = K > 1`` the latent ε-MSE of each example is the mean over K draws of (t, ε), the
first at the decoder's t: the same expected loss, with K× less variance from the draws, for K denoiser
passes (cheap beside a large decoder).

:func:`objective` computes the per-example ``[B]`` terms, weights them, and reduces them once;
:class:`Phase` says which terms a training mode uses at this step (autoencoder: decoder only; the
second stage of two_stage: diffusion only on a frozen encoder). Nothing here is detached: every term
reaches the encoder through μ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .contract import AuxHead, Batch, Decoder
from .diffusion import EpsModel, RecWeighting, diffusion_mse, q_sample, rec_weight, sample_timesteps
from .schedule import NoiseSchedule

__all__ = ["Objective", "Phase", "combine_terms", "decoder_weight", "objective"]


@dataclass(frozen=True)
class Phase:
    """Which terms are on at this step."""

    diffusion: bool = True  # the latent ε-MSE
    decoder: bool = True  # the decoder's own terms


@dataclass
class Objective:
    """The scalar loss, the per-example terms ``{name: [B]}`` and their weights, and scalar logs."""

    loss: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, Tensor | float]
    logs: dict[str, Tensor] = field(default_factory=dict)


def decoder_weight(
    decoder_objective: str,
    schedule: NoiseSchedule,
    t: Tensor,
    *,
    w: float,
    rec_weighting: RecWeighting,
    diffusion_on: bool,
) -> Tensor | float:
    """The weight of the decoder's terms: ELBO split (likelihood), 2 − w (diffusion), or 1 without the
    latent diffusion term (autoencoder training)."""
    if not diffusion_on:
        return 1.0
    if decoder_objective == "diffusion":
        return 2.0 - w
    if decoder_objective == "likelihood":
        return rec_weight(schedule, t, rec_weighting)
    raise ValueError(f"unknown decoder objective {decoder_objective!r}; choose likelihood or diffusion")


def combine_terms(terms: dict[str, Tensor], weights: dict[str, Tensor | float]) -> Tensor:
    """Σ_k mean_B(weight_k · term_k): the scalar training loss from per-example ``[B]`` terms."""
    total = torch.zeros((), device=next(iter(terms.values())).device)
    for name, weight in weights.items():
        total = total + (weight * terms[name].float()).mean()
    return total


def _latent_mse(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    mu: Tensor,
    t: Tensor,
    draws: int,
    low: int,
    generator: torch.Generator | None,
) -> Tensor:
    """The latent ε-MSE ``[B]``, averaged over ``draws`` draws of (t, ε); the first draw uses ``t``."""
    if draws < 1:
        raise ValueError(f"latent_draws must be >= 1 (got {draws})")
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    if draws > 1:  # drawn after the first draw's, so that K = 1 is the first draw alone
        n = (draws - 1) * t.shape[0]
        t = torch.cat([t, sample_timesteps(schedule, n, mu.device, generator, low=low)])
        extra = torch.randn((n, *mu.shape[1:]), generator=generator, device=mu.device, dtype=mu.dtype)
        noise, mu = torch.cat([noise, extra]), mu.repeat(draws, *([1] * (mu.dim() - 1)))
    return diffusion_mse(eps_model, schedule, mu, t, noise).view(draws, -1).mean(0)


def objective(
    mu: Tensor,
    batch: Batch,
    *,
    decoder: Decoder,
    eps_model: EpsModel | None,
    schedule: NoiseSchedule,
    phase: Phase = Phase(),
    w: float = 1.0,
    rec_weighting: RecWeighting = "elbo_split",
    head: AuxHead | Callable[[Tensor, Batch], Tensor] | None = None,
    head_weight: float = 1.0,
    generator: torch.Generator | None = None,
    latent_draws: int = 1,
) -> Objective:
    """The DiLED loss of one batch from the encoder mean ``mu [B, d]``.

    Terms (each ``[B]``): ``diffusion`` (latent ε-MSE), ``decoder/<name>`` for each term the decoder
    returns, ``head`` (with a head). ``logs`` holds the batch mean of each term and ``loss``.
    """
    if not (phase.diffusion or phase.decoder or head is not None):
        raise ValueError("the objective has no term: turn on the diffusion or the decoder term")
    if phase.diffusion and eps_model is None:
        raise ValueError("the diffusion term needs a latent denoiser (eps_model); an autoencoder has none")
    low = 1 if decoder.objective == "diffusion" else 2  # a diffusion decoder also trains at its step 1
    t = sample_timesteps(schedule, mu.shape[0], mu.device, generator, low=low)
    terms: dict[str, Tensor] = {}
    weights: dict[str, Tensor | float] = {}
    if phase.diffusion:
        terms["diffusion"] = _latent_mse(eps_model, schedule, mu, t, latent_draws, low, generator)
        weights["diffusion"] = w
    if phase.decoder:
        noise1 = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        x1 = q_sample(schedule, mu, torch.ones_like(t), noise1)
        dec_terms = decoder.loss(x1, batch, t=t, generator=generator)
        if not dec_terms:
            raise ValueError(f"{type(decoder).__name__}.loss returned no terms; return {{name: [B] tensor}}")
        weight = decoder_weight(
            decoder.objective, schedule, t, w=w, rec_weighting=rec_weighting, diffusion_on=phase.diffusion
        )
        for name, value in dec_terms.items():
            if value.shape != t.shape:
                raise ValueError(
                    f"{type(decoder).__name__}.loss term {name!r} has shape {tuple(value.shape)}; "
                    f"every term must be per example, shape ({t.shape[0]},)"
                )
            terms[f"decoder/{name}"] = value
            weights[f"decoder/{name}"] = weight
    if head is not None:
        terms["head"] = head.loss(mu, batch) if isinstance(head, AuxHead) else head(mu, batch)
        weights["head"] = head_weight
    loss = combine_terms(terms, weights)
    logs = {name: value.detach().float().mean() for name, value in terms.items()}
    logs["loss"] = loss.detach()
    return Objective(loss, terms, weights, logs)
