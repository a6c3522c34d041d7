"""The LightningDataModule base of a modality (the one contract piece that needs Lightning).

A modality's datamodule implements :meth:`DiledDataModule.dataset` and :meth:`DiledDataModule.collate`;
the base builds every dataloader, including the predict loader of each task. For ``diled predict`` it
may override :meth:`DiledDataModule.prediction_writers` (default: CSV/NPY through
:class:`~diled_core.predict.TableWriter`) and :meth:`DiledDataModule.prediction_metrics` (streaming
torchmetrics objects). See docs/plugins.md.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .contract import Batch, Decoder, Encoder, PredictTask
from .predict.metrics import PredictionMetric
from .predict.writers import RecordWriter, TableWriter

__all__ = ["OUTPUT_NAMES", "DiledDataModule", "worker_init"]

#: the default file stem of each task's records
OUTPUT_NAMES: dict[str, str] = {
    "reconstruct": "reconstructions",
    "generate": "samples",
    "encode": "embeddings",
    "interpolate": "interpolations",
    "optimise": "optimised",
    "transfer": "transfers",
}


def worker_init(worker_id: int) -> None:
    """``worker_init_fn`` of every DataLoader with workers: the worker ignores SIGTERM.

    A cluster's scheduler (and ``timeout``) stops a job with SIGTERM to all of its processes. A worker
    killed by it makes the main process raise "DataLoader worker ... killed by signal" wherever it is,
    instead of Lightning's clean stop that saves ``last.ckpt``. The main process still shuts its workers
    down as usual, and a worker whose main process is gone exits by itself (torch's watchdog).
    Lightning's per-worker seeding (``seed_everything(workers=True)``) is kept."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", "0")):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


class DiledDataModule(LightningDataModule):
    """Base LightningDataModule for a modality.

    Subclasses implement :meth:`dataset` and :meth:`collate`, and optionally
    :meth:`prediction_writers`, :meth:`prediction_metrics` and :meth:`check_compatible`. The base
    class builds every dataloader, including the predict loader for each predict task (the CLI calls
    :meth:`configure_prediction` first).
    """

    #: short name of the modality (the entry-point name), stored in checkpoints.
    modality: ClassVar[str] = ""
    #: the modality's own defaults of ``--prediction.*`` options left unset (``None``) on the command
    #: line, e.g. ``{"interpolation_mode": "lerp", "interpolation_points": 6}`` (see
    #: :meth:`~diled_core.predict.PredictOptions.resolve`)
    prediction_defaults: ClassVar[dict[str, Any]] = {}

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

    def prediction_writers(self, task: PredictTask, out_dir: Path, rank: int) -> list[RecordWriter]:
        """The writers of one rank's records of ``task`` (name files with
        :func:`~diled_core.predict.rank_file`). Default: ``<task records>.csv`` (+ ``.npy``)."""
        return [TableWriter(out_dir, OUTPUT_NAMES[task], rank)]

    def prediction_metrics(self, task: PredictTask) -> list[PredictionMetric]:
        """Fresh streaming metrics of ``task``, updated with each batch's outputs and reduced across
        ranks into ``metrics.json``. States must stay bounded in the number of rows."""
        return []

    def batch_from_records(self, records: list[Any]) -> Batch:
        """Raw records (vectors, sequences, sentences, image files ...) -> one batch, for the Python API
        (``model.encode(dm.batch_from_records([...]))``). Each modality documents its record type."""
        raise NotImplementedError(f"{type(self).__name__} does not turn raw records into a batch yet")

    def records_from_batch(self, batch: Batch) -> list[Any]:
        """A batch (e.g. ``model.sample(...)`` or ``model.decode(...)``) -> raw records, the inverse of
        :meth:`batch_from_records`."""
        raise NotImplementedError(f"{type(self).__name__} does not turn a batch into raw records yet")

    def attribute_labels(self, batch: Batch) -> Tensor | None:
        """Class labels ``[B]`` (long, −1: unlabelled) for attribute transfer, or ``None`` when this data
        has none. The default reads ``batch["label"]``: whole numbers, NaN or negative for unlabelled."""
        label = batch.get("label")
        if not isinstance(label, Tensor) or label.ndim != 1:
            return None
        if label.is_floating_point():
            known = ~label.isnan() & (label >= 0)
            return torch.where(known, label.nan_to_num(0).round().long(), -1)
        return torch.where(label >= 0, label.long(), -1)

    def attribute_loader(
        self, split: Literal["train", "val", "test"] = "train", max_examples: int | None = None, seed: int = 0
    ) -> DataLoader:
        """A seeded random subset of ``split`` (at most ``max_examples``), to fit attribute directions."""
        data = self.dataset(split)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:max_examples]
        subset = torch.utils.data.Subset(data, order.tolist())  # type: ignore[arg-type]
        return DataLoader(
            subset,
            batch_size=self.batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            worker_init_fn=worker_init,
        )

    @classmethod
    def model_sizes(cls, **init_args: Any) -> dict[str, Any]:
        """Sizes the encoder and decoder take from the data, computed from this class's init args
        (all of them, defaults filled in): e.g. ``{"max_length": init_args["max_length"]}``. The CLI
        sets each on every encoder/decoder whose constructor has a parameter of that name."""
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
            worker_init_fn=worker_init,
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
        return DataLoader(
            data,
            batch_size=batch_size,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            worker_init_fn=worker_init,
        )
