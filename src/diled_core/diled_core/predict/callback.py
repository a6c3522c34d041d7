"""The Lightning callback of ``diled predict``: each batch's outputs go once to the writers and the
metrics, then are dropped; ``metrics.json`` is written on rank 0 from metrics reduced across ranks.

A task's files and its ``metrics.json`` entry appear together or not at all: when writing fails (a
full disk, a folder made read-only) or the run stops early, the rank's files of the task are removed,
``metrics.json`` is left as it was, and the failure is one :class:`~diled_core.runs.OutputDirError`
paragraph.
"""

from __future__ import annotations

import errno
import json
import math
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from ..io import atomic_write
from ..runs import OutputDirError
from .metrics import PredictionMetric, core_metrics
from .options import PredictOptions
from .tasks import num_rows
from .writers import RecordWriter

__all__ = ["PredictionWriter", "to_cpu"]


def to_cpu(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: to_cpu(v) for k, v in x.items()}
    return x


def _json_safe(x: Any) -> Any:
    """NaN and infinities are not JSON: write them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    return x


class PredictionWriter(BasePredictionWriter):
    """Streams one task's outputs through the datamodule's writers and metrics (``predict/``)."""

    def __init__(self, options: PredictOptions) -> None:
        super().__init__(write_interval="batch")
        self.options = options
        self.writers: list[RecordWriter] = []
        self.metrics: list[PredictionMetric] = []
        self.files: list[Path] = []
        self.count = 0
        self._published = False  # metrics.json lists this task's files

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        self.options = self.options.resolve(dm.prediction_defaults)  # as the model's (set by hand: unset)
        task, out_dir = self.options.task, Path(self.options.output_dir)
        self.files, self.count, self._published = [], 0, False
        with self._writing():
            self.writers = dm.prediction_writers(task, out_dir, trainer.global_rank)
        self.metrics = [m.to(pl_module.device) for m in core_metrics(task) + dm.prediction_metrics(task)]

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        for metric in self.metrics:
            metric.update(prediction)
        cpu = to_cpu(prediction)
        with self._writing():
            for writer in self.writers:
                writer.write(cpu)
        self.count += num_rows(prediction)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._discard()

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        with self._writing():
            for writer in list(self.writers):  # a writer whose close fails stays listed, to be aborted
                self.files += writer.close()
                self.writers.remove(writer)
        count = self.count
        if trainer.world_size > 1:
            count = trainer.strategy.reduce(torch.tensor(count, device=pl_module.device), reduce_op="sum")
        values: dict[str, Any] = {"count": int(count)}
        for metric in self.metrics:  # every rank computes: torchmetrics reduces across ranks
            values.update(metric.compute())
        files = [f.name for f in self.files]
        if trainer.world_size > 1 and torch.distributed.is_initialized():  # the files of every rank
            every: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(every, files)
            files = [name for part in every for name in part]
        if trainer.is_global_zero:
            entry = {**values, "files": files, "options": asdict(self.options)}
            with self._writing():
                _update_metrics_file(Path(self.options.output_dir) / "metrics.json", self.options.task, entry)
        self._published = True

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write into one paragraph, after removing this rank's files of the task."""
        try:
            yield
        except OSError as err:
            self._discard()
            raise OutputDirError(_write_failure(self.options, err)) from None

    def _discard(self) -> None:
        """Remove this rank's files of the task unless ``metrics.json`` already lists them."""
        for writer in self.writers:
            writer.abort()
        self.writers = []
        if not self._published:
            for path in self.files:
                path.unlink(missing_ok=True)
            self.files = []


def _write_failure(options: PredictOptions, err: OSError) -> str:
    out = Path(options.output_dir)
    where = f" ({err.filename})" if err.filename else ""
    text = (
        f"could not write the {options.task} predictions into {out}: {err.strerror or err}{where}. The "
        f"task's files written so far were removed and metrics.json was left as it was"
    )
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(out).free if out.is_dir() else 0
        return text + (
            f". The disk is full ({free / 2**20:.1f} MiB free there): free some space or choose another "
            "--prediction.output_dir, then run the command again"
        )
    return text + ". Check that the folder is writable, or choose another --prediction.output_dir"


def _update_metrics_file(path: Path, task: str, entry: dict[str, Any]) -> None:
    """``metrics.json`` holds one entry per task, so several tasks can share an output folder."""
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        data = {}
    data[task] = _json_safe(entry)
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, default=str, allow_nan=False)
