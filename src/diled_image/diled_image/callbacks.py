"""A Lightning callback that logs image grids to TensorBoard while training.

Use it from a config::

    trainer:
      callbacks:
        - class_path: diled_image.ImageSampleLogger
          init_args: {every_n_validations: 1, num_images: 16, decode: {steps: 20}}
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

__all__ = ["ImageSampleLogger"]


class ImageSampleLogger(Callback):
    """After every ``every_n_validations``-th validation run (not the sanity check), on rank 0, log to
    TensorBoard:

    * ``samples/reconstructions``: the first ``num_images`` validation images above their
      reconstructions (the decoder's EMA weights when kept);
    * ``samples/reconstructions_from_noise`` (a decoder that can invert, e.g. the pixel-diffusion one):
      the same images above their reconstructions from random pixel noise, i.e. from the latent alone.
      Reconstructions from DDIM-inverted noise look right even when the decoder ignores the latent;
      these do not;
    * ``samples/generated``: ``num_images`` generated images (latent DDIM with ``sample_steps`` steps;
      not for ``training: autoencoder``, which has no latent diffusion);
    * scalars ``latent_val/std_mean``, ``latent_val/std_min`` and ``latent_val/norm_mean``: the spread of
      μ over those validation images (per-dimension std across images, mean norm), so a collapsing
      latent shows long before the core's end-of-epoch ``latent/*`` statistics.

    ``decode``: decoding options (e.g. ``{steps: 20}`` for the diffusion decoder). ``seed``: the same
    noise every time, so the grids are comparable across epochs. Without a TensorBoard logger it does
    nothing.
    """

    def __init__(
        self,
        every_n_validations: int = 1,
        num_images: int = 16,
        sample_steps: int = 20,
        decode: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.every_n_validations, self.num_images, self.sample_steps = (
            every_n_validations,
            num_images,
            sample_steps,
        )
        self.decode, self.seed = dict(decode or {}), seed
        self.validations = 0

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None or not trainer.is_global_zero or self.validations % self.every_n_validations:
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            for tag, grid in self.grids(trainer, pl_module).items():
                logger.experiment.add_image(tag, grid, global_step=trainer.global_step)
            for tag, value in self.latent_spread(trainer, pl_module).items():
                logger.experiment.add_scalar(tag, value, global_step=trainer.global_step)
        finally:
            pl_module.train(was_training)

    @torch.no_grad()
    def grids(self, trainer: Trainer, pl_module: Any) -> dict[str, torch.Tensor]:
        """``{tag: grid [3, H', W'] in [0, 1]}`` of reconstructions and samples."""
        g = torch.Generator(pl_module.device).manual_seed(self.seed)
        unit = lambda x: ((x.float() + 1) / 2).clamp(0, 1)  # noqa: E731
        grids = {}
        if getattr(pl_module, "training_mode", "joint") != "autoencoder":  # an autoencoder cannot sample
            samples = pl_module.sample(self.num_images, steps=self.sample_steps, generator=g)["image"].cpu()
            grids["samples/generated"] = make_grid(unit(samples), nrow=8, pad_value=1.0)
        val = trainer.datamodule.dataset("val")
        if len(val) == 0:
            return grids
        batch = trainer.datamodule.collate([val[i] for i in range(min(self.num_images, len(val)))])
        recon = {"samples/reconstructions": pl_module.reconstruct(batch, generator=g, **self.decode)["image"]}
        if pl_module.sampling_decoder().can_invert:
            options = {**self.decode, "from_inverted": False}
            recon["samples/reconstructions_from_noise"] = pl_module.reconstruct(
                batch, generator=g, **options
            )["image"]
        for tag, images in recon.items():
            images = images.cpu()
            nrow = min(8, len(images))  # rows of inputs above rows of their reconstructions
            rows = [
                torch.cat([batch["image"][i : i + nrow], images[i : i + nrow]])
                for i in range(0, len(images), nrow)
            ]
            grids[tag] = make_grid(unit(torch.cat(rows)), nrow=nrow, pad_value=1.0)
        return grids

    @torch.no_grad()
    def latent_spread(self, trainer: Trainer, pl_module: Any) -> dict[str, float]:
        """``latent_val/*``: μ's per-dimension std across the first ``num_images`` validation images
        (mean and minimum over dimensions) and its mean norm."""
        val = trainer.datamodule.dataset("val")
        if len(val) < 2:
            return {}
        batch = trainer.datamodule.collate([val[i] for i in range(min(self.num_images, len(val)))])
        mu = pl_module.encode(batch).float()
        std = mu.std(0)
        return {
            "latent_val/std_mean": std.mean().item(),
            "latent_val/std_min": std.min().item(),
            "latent_val/norm_mean": mu.norm(dim=1).mean().item(),
        }
