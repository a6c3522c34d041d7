"""The pixel-diffusion decoder p_φ(x0 | z): a conditional DDPM over images (DiffAE, Preechakul et al.
2022; method.md §3 "Images").

ε_φ(x_s, s, z) is a :class:`~diled_image.unet.ConditionalUNet` on the decoder's own chain of T' steps
(default linear, T' = 1000). Training: the core draws the shared t ~ U{1 … T}; this decoder maps it to
s = ⌈t · T' / T⌉, noises the image with ``q_sample`` and returns its ε-MSE, and the core trains
``w · L_latent + (2 − w) · L_decoder``. Decoding runs its own DDIM (Song et al. 2021) down to x0 from
random pixel noise (generation), from the DDIM-inverted image (reconstruction: near exact, DiffAE's
stochastic encoding) or from given noise (interpolation: slerped inverted noise): all of that is the
core's :class:`~diled_core.DiffusionDecoder`; this file is the UNet and the image shape.
"""

from __future__ import annotations

from typing import Literal, Sequence

from diled_core import DiffusionDecoder
from torch import Tensor

from .unet import ConditionalUNet

__all__ = ["UNetDiffusionDecoder"]


class UNetDiffusionDecoder(DiffusionDecoder):
    """Conditional UNet diffusion decoder; batches ``{"image": [B, channels, image_size, image_size]}``.

    Args:
        channels, image_size: of the images (from the data). latent_dim: d (from the encoder).
        base_channels, channel_mults, num_res_blocks, attention_resolutions, dropout: the UNet.
        timesteps, schedule: the decoder's own chain (T', default linear 1000 as in DDPM/DiffAE).
        latent_timesteps: T of the latent chain whose shared t this decoder receives (the CLI links it
            to ``model.timesteps``).

    Decoding options: ``steps`` (DDIM steps of its own chain, default 20; the paper uses 10–100),
    ``eta`` (default 0: deterministic), ``from_inverted`` (a reconstruction starts from the
    DDIM-inverted image, default true), ``inverted`` (a given x_T' ``[B, C, H, W]``),
    ``clip_denoised`` (clip each step's predicted x0 to [-1, 1], default true, as DiffAE).
    """

    data_key = "image"
    clip_range = (-1.0, 1.0)

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 64,
        latent_dim: int = 512,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4, 8),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        timesteps: int = 1000,
        schedule: Literal["linear", "cosine"] = "linear",
        latent_timesteps: int = 1000,
    ) -> None:
        super().__init__(latent_dim, timesteps, schedule, latent_timesteps)
        self.channels, self.image_size = channels, image_size
        self.unet = ConditionalUNet(
            channels,
            image_size,
            latent_dim,
            base_channels,
            channel_mults,
            num_res_blocks,
            attention_resolutions,
            dropout,
        )

    def eps(self, x: Tensor, s: Tensor, z: Tensor) -> Tensor:
        """ε_φ(x_s, s, z): ``x`` ``[B, C, H, W]``, own timesteps ``s`` ``[B]`` in 0 … T', ``z`` ``[B, d]``."""
        return self.unet(x, s.float() * (1000.0 / self.schedule.timesteps), z)

    def data_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)
