"""A toy decoder that is itself a conditional diffusion model (the smallest DiffAE-style decoder).

p_φ(x0 | z) is a DDPM over the data vectors, conditioned on the latent z: ε_φ(x_s, s, z) is an MLP.
Trained at the timestep shared with the latent diffusion (method.md §3, "Images"): the core draws
t ~ U{1 … T} and this decoder maps it onto its own chain of T' steps as s = ⌈t · T' / T⌉, so the core
trains ``w · L_latent + (2 − w) · L_decoder``. Decoding runs the decoder's own DDIM down to x0, from
random noise or, for a reconstruction, from the DDIM-inverted data (near-exact, DiffAE's stochastic
encoding). The image plugin's UNet decoder follows the same pattern.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..contract import Batch, Decoder
from ..denoiser import timestep_embedding
from ..diffusion import q_sample
from ..samplers import ddim_invert, ddim_sample
from ..schedule import NoiseSchedule, ScheduleKind

__all__ = ["ToyDiffusionDecoder"]


class ToyDiffusionDecoder(Decoder):
    """Conditional diffusion decoder for toy vectors.

    Args:
        dim: data dimension (from the data). latent_dim: z (from the encoder).
        hidden: MLP width. timesteps / schedule: the decoder's own chain (T', default linear 100).
        latent_timesteps: T of the latent chain whose shared t this decoder receives.

    Decoding options: ``steps`` (DDIM steps of its own chain, default 20), ``eta`` (default 0),
    ``from_inverted`` (reconstructions start from the inverted data, default true), ``inverted``
    (a given x_T', e.g. slerped inverted noise from the interpolate task).
    """

    objective = "diffusion"

    def __init__(
        self,
        dim: int = 8,
        latent_dim: int = 4,
        hidden: int = 128,
        timesteps: int = 100,
        schedule: ScheduleKind = "linear",
        latent_timesteps: int = 1000,
    ) -> None:
        super().__init__()
        self.dim, self.latent_dim, self.latent_timesteps = dim, latent_dim, latent_timesteps
        self.schedule = NoiseSchedule(schedule, timesteps)
        self.net = nn.Sequential(
            nn.Linear(dim + latent_dim + 32, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def eps(self, x: Tensor, s: Tensor, z: Tensor) -> Tensor:
        """ε_φ(x_s, s, z) for the decoder's own timesteps ``s`` ``[B]`` in 0 … T'."""
        temb = timestep_embedding(s.float() / self.schedule.timesteps * 1000.0, 32)
        return self.net(torch.cat([x, z, temb], dim=-1))

    def own_timestep(self, t: Tensor) -> Tensor:
        """The shared t in 1 … T -> this chain's s = ⌈t · T' / T⌉ in 1 … T'."""
        return torch.div(t * self.schedule.timesteps + self.latent_timesteps - 1, self.latent_timesteps,
                         rounding_mode="floor").clamp(1, self.schedule.timesteps)

    def loss(self, z: Tensor, batch: Batch, *, t: Tensor, generator=None) -> dict[str, Tensor]:
        x0 = batch["x"]
        s = self.own_timestep(t)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_s = q_sample(self.schedule, x0, s, noise)
        return {"eps_mse": ((noise - self.eps(x_s, s, z)) ** 2).mean(dim=1)}

    def _model(self, z: Tensor):
        return lambda x, s: self.eps(x, s, z)

    @torch.no_grad()
    def invert(self, batch: Batch, z: Tensor, *, steps: int = 20, **_: Any) -> Tensor:
        """DDIM inversion of the data x0 -> x_T' given z."""
        return ddim_invert(self._model(z), self.schedule, batch["x"].to(z), steps=steps, start=0)

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
        **options: Any,
    ) -> Batch:
        if options:
            raise ValueError(
                f"ToyDiffusionDecoder: unknown decoding option(s) {sorted(options)}; "
                "it takes steps, eta, from_inverted, inverted"
            )
        if inverted is None and batch is not None and from_inverted:
            inverted = self.invert(batch, z, steps=steps)
        x = inverted if inverted is not None else torch.randn(
            (z.shape[0], self.dim), generator=generator, device=z.device, dtype=z.dtype
        )
        return {"x": ddim_sample(self._model(z), self.schedule, x, steps=steps, eta=eta, generator=generator, end=0)}
