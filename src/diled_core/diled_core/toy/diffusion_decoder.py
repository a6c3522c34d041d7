"""A toy decoder that is itself a conditional diffusion model: the smallest
:class:`~diled_core.DiffusionDecoder` (an MLP ε_φ(x_s, s, z) over the data vectors).

The core draws the shared t ~ U{1 … T} and trains ``w · L_latent + (2 − w) · L_decoder``; decoding runs
the decoder's own DDIM down to x0, from random noise or from the DDIM-inverted data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..denoiser import timestep_embedding
from ..diffusion_decoder import DiffusionDecoder
from ..schedule import ScheduleKind

__all__ = ["ToyDiffusionDecoder"]


class ToyDiffusionDecoder(DiffusionDecoder):
    """Conditional diffusion decoder for toy vectors.

    Args:
        dim: data dimension (from the data). latent_dim: z (from the encoder).
        hidden: MLP width. timesteps / schedule: the decoder's own chain (T', default linear 100).
        latent_timesteps: T of the latent chain whose shared t this decoder receives.

    Decoding options: those of :class:`~diled_core.DiffusionDecoder` (``steps``, ``eta``,
    ``from_inverted``, ``inverted``).
    """

    data_key = "x"

    def __init__(
        self,
        dim: int = 8,
        latent_dim: int = 4,
        hidden: int = 128,
        timesteps: int = 100,
        schedule: ScheduleKind = "linear",
        latent_timesteps: int = 1000,
    ) -> None:
        super().__init__(latent_dim, timesteps, schedule, latent_timesteps)
        self.dim = dim
        self.net = nn.Sequential(
            nn.Linear(dim + latent_dim + 32, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def data_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def eps(self, x: Tensor, s: Tensor, z: Tensor) -> Tensor:
        temb = timestep_embedding(s.float() / self.schedule.timesteps * 1000.0, 32)
        return self.net(torch.cat([x, z, temb], dim=-1))
