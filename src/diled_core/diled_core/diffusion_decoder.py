"""A decoder that is itself a conditional diffusion model (method.md §3, "Images"; DiffAE's decoder).

:class:`DiffusionDecoder` holds everything such a decoder shares, so a modality writes only its
network ε_φ(x_s, s, z) and the shape of one example:

* its own chain of T' steps (a :class:`~diled_core.NoiseSchedule`); the core draws the shared
  t ~ U{1 … T} and the decoder maps it onto its chain as s = ⌈t · T' / T⌉ (``latent_timesteps`` is T,
  linked from ``model.timesteps`` by the CLI);
* the loss term ``eps_mse``, its ε-MSE at s per example, which the core weights ``2 − w``;
* decoding with its own DDIM down to x0 (:func:`~diled_core.ddim_sample` with ``end=0``) from random
  noise, or, for a reconstruction, from the DDIM-inverted data (DiffAE's stochastic encoding);
* :meth:`DiffusionDecoder.invert`, which the interpolate task uses to slerp inverted noise.

Decoding options: ``steps`` (DDIM steps, default 20), ``eta`` (default 0), ``from_inverted``
(reconstructions start from the inverted data, default true), ``inverted`` (a given x_T'),
``clip_denoised`` (for data in a known range, ``clip_range``: clip each step's predicted x0 into it
and recompute ε from it, as improved-diffusion's and DiffAE's DDIM do; default true).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from .contract import Batch, Decoder
from .diffusion import q_sample
from .samplers import ddim_invert, ddim_sample
from .schedule import NoiseSchedule, ScheduleKind

__all__ = ["DiffusionDecoder"]


class DiffusionDecoder(Decoder):
    """Base of conditional diffusion decoders. Subclasses implement :meth:`eps` and :meth:`data_shape`
    and set ``data_key`` (the batch key of the data, e.g. ``"image"``)."""

    objective = "diffusion"
    data_key: ClassVar[str] = "x"
    #: the range of the data (e.g. ``(-1.0, 1.0)`` for images), or ``None`` for unbounded data
    clip_range: ClassVar[tuple[float, float] | None] = None

    def __init__(
        self,
        latent_dim: int,
        timesteps: int = 1000,
        schedule: ScheduleKind = "linear",
        latent_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        self.latent_dim, self.latent_timesteps = latent_dim, latent_timesteps
        self.schedule = NoiseSchedule(schedule, timesteps)

    def eps(self, x: Tensor, s: Tensor, z: Tensor) -> Tensor:  # pragma: no cover - interface
        """ε_φ(x_s, s, z): noisy data ``[B, …]``, this chain's timesteps ``s`` ``[B]`` in 0 … T', latents
        ``z [B, d]`` -> predicted noise ``[B, …]``."""
        raise NotImplementedError

    def data_shape(self) -> tuple[int, ...]:  # pragma: no cover - interface
        """The shape of one example (e.g. ``(channels, size, size)``), for sampling pure noise."""
        raise NotImplementedError

    def own_timestep(self, t: Tensor) -> Tensor:
        """The shared t in 1 … T -> this chain's s = ⌈t · T' / T⌉ in 1 … T'."""
        own = self.schedule.timesteps
        return torch.div(t * own + self.latent_timesteps - 1, self.latent_timesteps, rounding_mode="floor").clamp(1, own)

    def loss(self, z: Tensor, batch: Batch, *, t: Tensor, generator=None) -> dict[str, Tensor]:
        x0 = batch[self.data_key]
        s = self.own_timestep(t)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        err = (noise - self.eps(q_sample(self.schedule, x0, s, noise), s, z)) ** 2
        return {"eps_mse": err.flatten(1).mean(dim=1)}

    def _model(self, z: Tensor, clip_denoised: bool = True):
        """ε(x_s, s) for the samplers; with ``clip_denoised`` and a ``clip_range``, the predicted x0 is
        clipped into the range and ε recomputed from it."""
        if not clip_denoised or self.clip_range is None:
            return lambda x, s: self.eps(x, s, z)
        low, high = self.clip_range

        def eps(x: Tensor, s: Tensor) -> Tensor:
            e = self.eps(x, s, z)
            abar = self.schedule.gather(self.schedule.alphas_cumprod, s, x)
            x0 = ((x - (1 - abar).sqrt() * e) / abar.sqrt()).clamp(low, high)
            return (x - abar.sqrt() * x0) / (1 - abar).sqrt()

        return eps

    @torch.no_grad()
    def invert(self, batch: Batch, z: Tensor, *, steps: int = 20, clip_denoised: bool = True, **_: Any) -> Tensor:
        """DDIM inversion of the data x0 -> x_T' given the latents ``z`` (other decoding options are
        accepted and ignored, since the interpolate task passes them all)."""
        model = self._model(z, clip_denoised)
        x0 = batch[self.data_key].to(device=z.device, dtype=torch.promote_types(z.dtype, torch.float32))
        return ddim_invert(model, self.schedule, x0, steps=steps, start=0)

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        *,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        steps: int = 20,
        eta: float = 0.0,
        from_inverted: bool = True,
        inverted: Tensor | None = None,
        clip_denoised: bool = True,
        **options: Any,
    ) -> Batch:
        if options:
            raise ValueError(
                f"{type(self).__name__}: unknown decoding option(s) {sorted(options)}; "
                "it takes steps, eta, from_inverted, inverted, clip_denoised"
            )
        if inverted is None and batch is not None and from_inverted:
            inverted = self.invert(batch, z, steps=steps, clip_denoised=clip_denoised)
        x = inverted.to(z) if inverted is not None else torch.randn(
            (z.shape[0], *self.data_shape()), generator=generator, device=z.device, dtype=z.dtype
        )
        model = self._model(z, clip_denoised)
        x0 = ddim_sample(model, self.schedule, x, steps=steps, eta=eta, generator=generator, end=0)
        return {self.data_key: x0 if self.clip_range is None else x0.clamp(*self.clip_range)}
