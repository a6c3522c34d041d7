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
    * ``samples/generated``: ``num_images`` generated images (latent DDIM with ``sample_steps`` steps).

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
        finally:
            pl_module.train(was_training)

    @torch.no_grad()
    def grids(self, trainer: Trainer, pl_module: Any) -> dict[str, torch.Tensor]:
        """``{tag: grid [3, H', W'] in [0, 1]}`` of reconstructions and samples."""
        g = torch.Generator(pl_module.device).manual_seed(self.seed)
        samples = pl_module.sample(self.num_images, steps=self.sample_steps, generator=g)["image"].cpu()
        unit = lambda x: ((x.float() + 1) / 2).clamp(0, 1)  # noqa: E731
        grids = {"samples/generated": make_grid(unit(samples), nrow=8, pad_value=1.0)}
        val = trainer.datamodule.dataset("val")
        if len(val) == 0:
            return grids
        batch = trainer.datamodule.collate([val[i] for i in range(min(self.num_images, len(val)))])
        recon = pl_module.reconstruct(batch, generator=g, **self.decode)["image"].cpu()
        nrow = min(8, len(recon))  # rows of inputs above rows of their reconstructions
        rows = [
            torch.cat([batch["image"][i : i + nrow], recon[i : i + nrow]]) for i in range(0, len(recon), nrow)
        ]
        grids["samples/reconstructions"] = make_grid(unit(torch.cat(rows)), nrow=nrow, pad_value=1.0)
        return grids
