"""What a modality plugin implements: encoder, decoder and auxiliary head (plain torch, no Lightning).

A modality (text, protein, image, the built-in toy) provides, through the entry-point group
``diled.modalities`` (see :mod:`diled_core.registry` and docs/plugins.md):

* an :class:`Encoder`: a batch of data -> the encoder mean μ ``[B, latent_dim]`` (method.md §2,
  the forward step x0 -> x1);
* a :class:`Decoder`: the last reverse step p_φ(x0 | x1). It returns its own per-example loss terms
  (a likelihood decoder: token NLL or pixel MSE; a diffusion decoder: its own ε-MSE at the shared
  timestep, method.md §3) and decodes latents into data, seeing the original batch when there is one;
* a :class:`~diled_core.data.DiledDataModule` (the one contract piece that needs Lightning, in
  :mod:`diled_core.data`).

Optional: an :class:`AuxHead` on μ trained jointly (a property regressor or classifier, method.md §4).
This module imports only torch and typing, so math modules may use its types.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "AuxHead",
    "Batch",
    "Decoder",
    "DecoderObjective",
    "Encoder",
    "Guidance",
    "ParamGroup",
    "PredictTask",
    "trainable_groups",
]

#: A batch is a dict of tensors (and optionally lists of strings, e.g. ids); every tensor and list has
#: the batch dimension first. Tensors may be padded per batch (variable length).
Batch = dict[str, Any]
#: ``(x_t [B, d], t [B] long) -> ∇_{x_t} log p(y | x_t)  [B, d]`` (method.md §4, guided sampling).
Guidance = Callable[[Tensor, Tensor], Tensor]
PredictTask = Literal["reconstruct", "generate", "encode", "interpolate", "optimise", "transfer"]
DecoderObjective = Literal[
    "likelihood",  # loss terms are −log p_φ(x0 | x1); weighted by the ELBO split (method.md §3)
    "diffusion",  # the decoder is a conditional diffusion model; its ε-MSE is weighted 2 − w
]
#: A torch optimizer parameter group: ``{"params": [...], "lr": ..., ...}`` (keys other than
#: ``params`` override the optimizer's defaults for that group).
ParamGroup = dict[str, Any]


def trainable_groups(module: nn.Module) -> list[ParamGroup]:
    """One group with every parameter of ``module`` that requires a gradient (none: no group)."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [{"params": params}] if params else []


class _Part(nn.Module):
    """What encoders and decoders share: optimizer groups and weights that stay out of checkpoints."""

    def param_groups(self) -> list[ParamGroup]:
        """Optimizer parameter groups of this part. Override to give pretrained layers their own
        learning rate; frozen parameters (``requires_grad=False``) must not be listed."""
        return trainable_groups(self)

    def external_state(self) -> list[str]:
        """Prefixes of state-dict keys (relative to this part) that are frozen pretrained weights
        rebuilt at construction from where they came from (a local path, an installed package).

        The core leaves them out of checkpoints and refills them from the freshly built part when a
        checkpoint is loaded. Only list weights that never change during training."""
        return []


class Encoder(_Part):
    """Data -> encoder mean μ.  Subclasses set ``self.latent_dim`` and implement ``forward``."""

    latent_dim: int

    def forward(self, batch: Batch) -> Tensor:  # pragma: no cover - interface
        """Return μ, shape ``[B, latent_dim]``."""
        raise NotImplementedError


class Decoder(_Part):
    """The decoder p_φ(x0 | x1).

    ``objective`` tells the core how to weight the terms :meth:`loss` returns (method.md §3):

    * ``"likelihood"``: −log p_φ(x0 | z) per example (token cross-entropy averaged over real tokens,
      pixel MSE ...), weighted by the ELBO split 1 / ((T − 1) λ_t), with t ~ U{2 … T}.
    * ``"diffusion"``: the decoder is itself a conditional diffusion model; its terms are its own
      ε-MSE at the timestep ``t`` shared with the latent diffusion, t ~ U{1 … T} (so the decoder also
      trains at its own step 1), and the core trains ``w · L_latent + (2 − w) · L_decoder``.

    A decoder whose own chain has T' ≠ T steps maps the shared ``t`` onto it (e.g. ⌈t · T' / T⌉).
    """

    objective: ClassVar[DecoderObjective] = "likelihood"
    latent_dim: int

    def loss(
        self, z: Tensor, batch: Batch, *, t: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:  # pragma: no cover - interface
        """Per-example loss terms ``{name: [B]}`` of reconstructing ``batch`` from ``z [B, d]``.

        ``t`` ``[B]`` (long, in 1 … T) is the shared timestep; a likelihood decoder may ignore it.
        Terms are never reduced over the batch; the core weights and reduces them."""
        raise NotImplementedError

    def decode(
        self,
        z: Tensor,
        *,
        batch: Batch | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Batch:  # pragma: no cover - interface
        """Latents ``z [B, d]`` -> data (a batch dict, e.g. ``{"tokens": [B, L]}``).

        ``batch`` is the original data when decoding a reconstruction (``None`` when generating);
        ``options`` are decoding options from ``--prediction.decode`` (max length, temperature,
        top-p, number of pixel steps ...). Unknown options should raise a ``ValueError`` naming them."""
        raise NotImplementedError

    def invert(self, batch: Batch, z: Tensor, **options: Any) -> Any:  # pragma: no cover - optional
        """Optional: the decoder's own inversion of ``batch`` given ``z`` (e.g. DDIM-inverted pixel
        noise), passed back to :meth:`decode` as ``options["inverted"]``. Decoders without one keep
        this default, and :attr:`can_invert` is then ``False``."""
        raise NotImplementedError

    @property
    def can_invert(self) -> bool:
        return type(self).invert is not Decoder.invert


class AuxHead(nn.Module):
    """A supervised head on μ trained jointly with the model (e.g. a property regressor)."""

    def forward(self, mu: Tensor) -> Tensor:  # pragma: no cover - interface
        """Prediction ``[B]`` from μ ``[B, latent_dim]``; differentiable w.r.t. μ (used by optimise)."""
        raise NotImplementedError

    def loss(self, mu: Tensor, batch: Batch) -> Tensor:  # pragma: no cover - interface
        """Per-example loss ``[B]``; zero for examples without a label."""
        raise NotImplementedError
