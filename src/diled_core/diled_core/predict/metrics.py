"""Streaming prediction metrics: torchmetrics ``Metric`` objects updated once per batch.

A :class:`PredictionMetric` is updated with each batch's output dict (on the model's device) and its
``compute()`` returns ``{name: float}``. torchmetrics reduces the states across DDP ranks, so every
rank calls ``compute()`` and rank 0 writes ``metrics.json``. States must stay bounded in the number of
rows: sums and counts, or a :class:`Reservoir` of at most ``capacity`` rows for metrics that compare
rows with each other (diversity, MMD), whose value then says how many rows it used.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor
from torchmetrics import Metric

from ..contract import Batch, PredictTask

__all__ = ["MeanOf", "PredictionMetric", "RatioFn", "RatioOf", "Reservoir", "core_metrics"]

#: ``outputs -> (numerator [B], denominator [B])``
RatioFn = Callable[[Batch], tuple[Tensor, Tensor]]


class PredictionMetric(Metric):
    """A metric of predict outputs: ``update(outputs)`` per batch, ``compute() -> dict[str, float]``."""

    full_state_update = False

    def update(self, outputs: Batch) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def compute(self) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError


class MeanOf(PredictionMetric):
    """Means of per-row values: ``{name: mean}`` for each ``name -> fn(outputs) [B]``.

    NaN rows (a value undefined for that row, or a diverged model's output) are left out of the mean
    and counted: ``{name}_nan_rows`` appears beside the mean whenever there were any.
    """

    def __init__(self, values: dict[str, Callable[[Batch], Tensor]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values = values
        self.add_state("sums", torch.zeros(len(values), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("counts", torch.zeros(len(values), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("nans", torch.zeros(len(values), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, outputs: Batch) -> None:
        for i, fn in enumerate(self.values.values()):
            v = fn(outputs).detach().double().flatten()
            nan = v.isnan()
            v = v[~nan]
            self.sums[i] += v.sum().to(self.sums.device)
            self.counts[i] += v.numel()
            self.nans[i] += nan.sum().to(self.nans.device)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, name in enumerate(self.values):
            out[name] = (self.sums[i] / self.counts[i]).item() if self.counts[i] > 0 else math.nan
            if self.nans[i] > 0:
                out[f"{name}_nan_rows"] = self.nans[i].item()
        return out


class RatioOf(PredictionMetric):
    """Ratios of sums over all rows: ``{name: Σ num / Σ den}`` for each ``name -> fn(outputs)`` giving
    ``(num [B], den [B])`` (``nan`` without a denominator)."""

    def __init__(self, values: dict[str, RatioFn]) -> None:
        super().__init__()
        self.values = values
        self.add_state("num", torch.zeros(len(values), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("den", torch.zeros(len(values), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, outputs: Batch) -> None:
        for i, fn in enumerate(self.values.values()):
            num, den = fn(outputs)
            self.num[i] += num.detach().double().sum().to(self.num.device)
            self.den[i] += den.detach().double().sum().to(self.den.device)

    def compute(self) -> dict[str, float]:
        return {
            name: (self.num[i] / self.den[i]).item() if self.den[i] > 0 else math.nan
            for i, name in enumerate(self.values)
        }


class Reservoir(PredictionMetric):
    """Keeps the first ``capacity`` rows per rank of ``fn(outputs) [B, …]`` (a bounded sample) for a
    metric over pairs of rows; ``compute()`` applies ``metric(rows) -> dict`` to all ranks' rows."""

    def __init__(
        self, fn: Callable[[Batch], Tensor], metric: Callable[[Tensor], dict[str, float]], capacity: int = 2000
    ) -> None:
        super().__init__()
        self.fn, self.metric, self.capacity = fn, metric, capacity
        self.add_state("rows", [], dist_reduce_fx="cat")
        self._kept = 0

    def update(self, outputs: Batch) -> None:
        if self._kept >= self.capacity:
            return
        rows = self.fn(outputs).detach()[: self.capacity - self._kept]
        self._kept += rows.shape[0]
        self.rows.append(rows)

    def compute(self) -> dict[str, float]:
        rows = self.rows if isinstance(self.rows, Tensor) else torch.cat(self.rows) if self.rows else None
        return self.metric(rows) if rows is not None and len(rows) else {}

    def reset(self) -> None:
        super().reset()
        self._kept = 0


def core_metrics(task: PredictTask) -> list[PredictionMetric]:
    """The metrics the core reports for every modality: decoder loss terms of ``reconstruct``
    (``<term>_mean``) and the head's prediction before/after ``optimise``."""
    if task == "reconstruct":
        return [_LossMeans()]
    if task == "optimise":
        return [
            MeanOf(
                {
                    "pred_before_mean": lambda o: o["pred_before"],
                    "pred_after_mean": lambda o: o["pred_after"],
                    "improved_fraction": lambda o: (o["pred_after"] > o["pred_before"]).float(),
                }
            )
        ]
    return []


class _LossMeans(PredictionMetric):
    """``<term>_mean`` for every decoder loss term in ``outputs["loss"]`` (names known at the first batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.add_state("sums", torch.zeros(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, outputs: Batch) -> None:
        losses: dict[str, Tensor] = outputs["loss"]
        if not self.sums.numel():
            self.names = sorted(losses)
            self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=self.count.device)
        self.sums += torch.stack([losses[n].detach().double().sum() for n in self.names]).to(self.sums.device)
        self.count += next(iter(losses.values())).shape[0]

    def compute(self) -> dict[str, float]:
        return {f"{n}_mean": (self.sums[i] / self.count).item() for i, n in enumerate(self.names)}

    def reset(self) -> None:
        super().reset()
        self.names = []
