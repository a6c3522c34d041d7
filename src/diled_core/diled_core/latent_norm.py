"""Standardising the encoder's μ, which keeps joint training from shrinking the latent (method.md §3).

Joint training rewards a latent that is easy to denoise: the latent ε-MSE falls with the spread of μ
across examples, while the decoder can undo any scale, so an encoder left free makes μ small (the
failure mode method.md §3 asks to watch). Standardising each latent dimension over the data rules that
out; DiffAE standardises its semantic latents the same way before training its latent diffusion.
Standardising each dimension alone still lets the encoder put every example on one line (all
dimensions perfectly correlated), the next easiest latent to denoise; :class:`GroupWhiten` also
decorrelates the dimensions within groups. Encoders of any modality end with :func:`latent_norm`.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["GroupWhiten", "LatentNorm", "Normalize", "latent_norm"]

#: ``batch``: :class:`LatentNorm`; ``whiten``: :class:`GroupWhiten`; ``example``: each μ over its own
#: dimensions (‖μ‖ = √d); ``none``.
Normalize = Literal["batch", "whiten", "example", "none"]


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


class GroupWhiten(nn.Module):
    """Whiten μ over the data within groups of ``group`` dimensions: each group has zero mean and
    identity covariance (Cholesky whitening, with gradients through the statistics).

    :class:`LatentNorm` fixes each dimension's variance, but a joint encoder can still make all
    dimensions one signal: on the VADER sentences (``configs/text/vader_cpu.yaml``, w = 8) μ had an
    effective rank of 1.0 after 300 steps under ``batch``, and 19.8 under this (the autoencoder's:
    32.3). Whitening all d dimensions at once needs batches larger than d, so groups are whitened
    apart (a batch must exceed ``group``); the groups may still share one signal. The running mean
    and covariance (momentum 0.1) whiten in eval mode and for training batches no larger than a
    group. Under DDP each process whitens over its own batch.
    """

    def __init__(self, latent_dim: int, group: int = 16, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.group, self.eps, self.momentum = min(group, latent_dim), eps, momentum
        full, rest = divmod(latent_dim, self.group)
        self.sizes = [self.group] * full + [rest] * (rest > 0)
        self.register_buffer("running_mean", torch.zeros(latent_dim))
        # the groups' covariances, each flattened, one after the other
        self.register_buffer("running_cov", torch.cat([torch.eye(n).flatten() for n in self.sizes]))

    def forward(self, mu: Tensor) -> Tensor:
        with torch.autocast(mu.device.type, enabled=False):  # Cholesky in fp32, also under bf16
            x = mu.float()
            batch = self.training and x.shape[0] > self.group
            mean = x.mean(0) if batch else self.running_mean
            stored = self.running_cov.split([n * n for n in self.sizes])
            out, covs = [], []
            for n, part, old in zip(self.sizes, (x - mean).split(self.sizes, dim=1), stored):
                cov = part.T @ part / (x.shape[0] - 1) if batch else old.view(n, n)
                covs.append(cov)
                ridge = self.eps * cov.diagonal().mean().clamp(min=torch.finfo(x.dtype).tiny)
                chol = torch.linalg.cholesky(cov + ridge * torch.eye(n, device=x.device))
                out.append(torch.linalg.solve_triangular(chol, part.T, upper=False).T)
            if batch:
                with torch.no_grad():
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_cov.lerp_(torch.cat([c.flatten() for c in covs]), self.momentum)
            return torch.cat(out, dim=1).to(mu.dtype)


def latent_norm(kind: Normalize, latent_dim: int, owner: str) -> nn.Module:
    """The module an encoder applies to its raw μ ``[B, latent_dim]``; ``owner`` names it in errors."""
    if kind == "batch":
        return LatentNorm(latent_dim)
    if kind == "whiten":
        return GroupWhiten(latent_dim)
    if kind == "example":
        return nn.LayerNorm(latent_dim, elementwise_affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"{owner}: normalize must be one of {', '.join(get_args(Normalize))} (got {kind!r})")
