"""The public plugin interface: what a modality provides to the core.

A modality (text, protein, image, the built-in toy) provides three things, registered through the
entry-point group ``diled.modalities`` (see :mod:`diled_core.registry`):

* an :class:`Encoder`: a batch of data -> the encoder mean μ, shape ``[B, latent_dim]``
  (method.md §2, the forward step x0 -> x1);
* a :class:`Decoder`: the last reverse step p_φ(x0 | x1), giving a per-example loss ``[B]`` and a
  decode from latents to data tensors (method.md §2-3);
* a :class:`DiledDataModule`: a LightningDataModule that yields batches (``dict[str, Tensor]``),
  and turns predicted tensors into records on disk (FASTA, CSV, PNG ...) and metrics.

Optional: an :class:`AuxHead` on μ trained jointly (e.g. a property regressor, method.md §4).
The core never imports a plugin; plugins import only what ``diled_core.__all__`` exports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["AuxHead", "Batch", "Decoder", "DiledDataModule", "Encoder", "Guidance", "PredictTask"]

#: A batch is a dict of tensors (and optionally lists of strings, e.g. ids); every tensor has the
#: batch dimension first.
Batch = dict[str, Any]
#: ``(x_t [B, d], t [B] long) -> ∇_{x_t} log p(y | x_t)  [B, d]`` (method.md §4, guided sampling).
Guidance = Callable[[Tensor, Tensor], Tensor]
PredictTask = Literal["reconstruct", "generate", "encode", "interpolate", "optimise"]


class Encoder(nn.Module):
    """Data -> encoder mean μ.  Subclasses set ``self.latent_dim`` and implement ``forward``."""

    latent_dim: int

    def forward(self, batch: Batch) -> Tensor:  # pragma: no cover - interface
        """Return μ, shape ``[B, latent_dim]``."""
        raise NotImplementedError


class Decoder(nn.Module):
    """The decoder p_φ(x0 | x1).

    ``objective`` says what :meth:`nll` returns:

    * ``"likelihood"``: −log p_φ(x0 | z) per example (token cross-entropy averaged over real tokens,
      pixel MSE ...). The core weights it with the ELBO split of method.md §3.
    * ``"diffusion"``: the decoder is itself a conditional diffusion model (method.md §3, "Images");
      :meth:`nll` returns its own ε-MSE at the timestep ``t`` shared with the latent diffusion, and the
      core trains ``w · L_latent + (2 − w) · L_decoder``.
    """

    objective: ClassVar[Literal["likelihood", "diffusion"]] = "likelihood"

    def nll(self, z: Tensor, batch: Batch, t: Tensor | None = None) -> Tensor:  # pragma: no cover
        """Per-example loss ``[B]`` of reconstructing ``batch`` from latents ``z [B, latent_dim]``."""
        raise NotImplementedError

    def decode(self, z: Tensor, *, generator: torch.Generator | None = None) -> Batch:  # pragma: no cover
        """Latents ``z [B, latent_dim]`` -> data tensors (a batch dict, e.g. ``{"tokens": [B, L]}``)."""
        raise NotImplementedError


class AuxHead(nn.Module):
    """A supervised head on μ trained jointly with the model (e.g. a property regressor)."""

    def forward(self, mu: Tensor) -> Tensor:  # pragma: no cover - interface
        """Prediction ``[B]`` from μ ``[B, latent_dim]``; differentiable w.r.t. μ (used by optimise)."""
        raise NotImplementedError

    def loss(self, mu: Tensor, batch: Batch) -> Tensor:  # pragma: no cover - interface
        """Per-example loss ``[B]``; zero for examples without a label."""
        raise NotImplementedError


class DiledDataModule(LightningDataModule):
    """Base LightningDataModule for a modality.

    Subclasses implement :meth:`dataset`, :meth:`collate`, :meth:`write_predictions` and optionally
    :meth:`prediction_metrics`. The base class builds every dataloader, including the predict loader
    for each predict task (the CLI calls :meth:`configure_prediction` first).
    """

    #: short name of the modality (the entry-point name), stored in checkpoints.
    modality: ClassVar[str] = ""

    def __init__(self, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.predict_task: PredictTask = "reconstruct"
        self.predict_split: Literal["train", "val", "test"] = "test"
        self.num_samples = 64
        self.max_examples: int | None = None

    # --- to implement -------------------------------------------------------------------------
    def dataset(self, split: Literal["train", "val", "test"]) -> Dataset:  # pragma: no cover
        """The examples of one split (after :meth:`setup`)."""
        raise NotImplementedError

    def collate(self, examples: list[Any]) -> Batch:  # pragma: no cover
        """Examples -> one batch dict."""
        raise NotImplementedError

    def write_predictions(self, task: PredictTask, outputs: Batch, out_dir: Path, rank: int) -> list[Path]:
        """Write one rank's predictions (all batches concatenated) as records; return the files."""
        raise NotImplementedError  # pragma: no cover

    def prediction_metrics(self, task: PredictTask, outputs: Batch) -> dict[str, float]:
        """Metrics of a predict task over all ranks' outputs (written to ``metrics.json``)."""
        return {}

    def check_compatible(self, encoder: Encoder, decoder: Decoder) -> None:
        """Raise ``ValueError`` with a how-to-fix message if the model does not fit this data
        (e.g. a decoder built for another sequence length). Called by the module at ``setup``."""

    # --- provided -----------------------------------------------------------------------------
    def configure_prediction(
        self,
        task: PredictTask,
        *,
        split: Literal["train", "val", "test"] = "test",
        num_samples: int = 64,
        max_examples: int | None = None,
    ) -> None:
        """Choose what :meth:`predict_dataloader` yields (called by the CLI / :class:`DiLED` API)."""
        self.predict_task, self.predict_split = task, split
        self.num_samples, self.max_examples = num_samples, max_examples

    def _loader(self, split: Literal["train", "val", "test"], shuffle: bool = False) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate,
            drop_last=False,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        if self.predict_task == "generate":
            # Generation needs no data: each batch is just the indices of the samples to draw.
            return DataLoader(
                range(self.num_samples),  # type: ignore[arg-type]
                batch_size=self.batch_size,
                collate_fn=lambda idx: {"index": torch.tensor(idx)},
            )
        data = self.dataset(self.predict_split)
        if self.max_examples is not None:
            data = torch.utils.data.Subset(data, range(min(self.max_examples, len(data))))  # type: ignore
        # interpolate pairs consecutive examples, so batches must hold an even number of them
        batch_size = self.batch_size + (self.batch_size % 2 if self.predict_task == "interpolate" else 0)
        return DataLoader(data, batch_size=batch_size, collate_fn=self.collate, num_workers=self.num_workers)
