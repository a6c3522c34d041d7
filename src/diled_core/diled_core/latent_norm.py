"""Standardising the encoder's μ, which keeps joint training from shrinking the latent (method.md §3).

Joint training rewards a latent that is easy to denoise: the latent ε-MSE falls with the spread of μ
across examples, while the decoder can undo any scale, so an encoder left free makes μ small (the
failure mode method.md §3 asks to watch). Standardising each latent dimension over the data rules that
out; DiffAE standardises its semantic latents the same way before training its latent diffusion.
Encoders of any modality end with :func:`latent_norm`.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["LatentNorm", "Normalize", "latent_norm"]

#: ``batch``: :class:`LatentNorm`; ``example``: each μ over its own dimensions (‖μ‖ = √d); ``none``.
Normalize = Literal["batch", "example", "none"]


class LatentNorm(nn.BatchNorm1d):
    """Standardise each latent dimension over the data (a BatchNorm without scale and shift).

    Training: over the batch, with gradients through the statistics, so the encoder cannot shrink the
    spread of μ across examples; the running mean and variance (momentum 0.1) standardise in
    eval mode, so encoding stays per example and deterministic. A training batch of one example uses
    the running statistics.

    Under DDP each process standardises over its own batch, as BatchNorm does, and DDP broadcasts rank
    0's running statistics. On GPUs, ``--trainer.sync_batchnorm true`` makes the batch statistics
    global: torch's ``SyncBatchNorm`` takes this module's place with the same ``eps`` and no affine
    (a batch of one then no longer falls back to the running statistics). torch has no SyncBatchNorm
    on CPU processes.
    """

    def __init__(self, latent_dim: int) -> None:
        # a small eps: a fresh encoder's raw spread across examples can be tiny (variance ~1e-5 per
        # dimension for pooled image features), and BatchNorm's default 1e-5 would halve it
        super().__init__(latent_dim, eps=1e-10, affine=False)

    def forward(self, mu: Tensor) -> Tensor:
        if self.training and mu.shape[0] < 2:
            return F.batch_norm(mu, self.running_mean, self.running_var, training=False, eps=self.eps)
        return super().forward(mu)


def latent_norm(kind: Normalize, latent_dim: int, owner: str) -> nn.Module:
    """The module an encoder applies to its raw μ ``[B, latent_dim]``; ``owner`` names it in errors."""
    if kind == "batch":
        return LatentNorm(latent_dim)
    if kind == "example":
        return nn.LayerNorm(latent_dim, elementwise_affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"{owner}: normalize must be one of {', '.join(get_args(Normalize))} (got {kind!r})")
