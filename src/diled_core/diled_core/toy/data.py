"""Toy data: vectors from a Gaussian mixture (the smallest modality, for tests and as an example)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from ..contract import Batch, Decoder, Encoder, PredictTask
from ..data import DiledDataModule
from ..predict.metrics import MeanOf, PredictionMetric, Reservoir

__all__ = ["ToyDataModule", "mixture_means", "mmd_rbf"]


def mixture_means(dim: int, components: int, radius: float, seed: int) -> Tensor:
    """``components`` mixture means on a sphere of ``radius`` in R^dim, fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(components, dim, generator=g)
    return radius * means / means.norm(dim=1, keepdim=True)


def mmd_rbf(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)) -> float:
    """Squared maximum mean discrepancy (biased estimate) with a sum of RBF kernels."""
    xy = torch.cat([x, y]).double()
    d2 = torch.cdist(xy, xy) ** 2
    k = sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)
    n = x.shape[0]
    return (k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()).item()


class ToyDataModule(DiledDataModule):
    """Gaussian-mixture vectors. Batches: ``x`` [B, dim], ``label`` [B] (component), ``property`` [B]
    (the first coordinate, a target for a :class:`~diled_core.RegressionHead`).

    Args:
        dim: data dimension.
        components: number of mixture components.
        radius: distance of the component means from the origin.
        noise: standard deviation of each component.
        n_train, n_val, n_test: split sizes.
        seed: fixes the means and every split.
    """

    modality = "toy"

    def __init__(
        self,
        dim: int = 8,
        components: int = 6,
        radius: float = 3.0,
        noise: float = 0.3,
        n_train: int = 4096,
        n_val: int = 512,
        n_test: int = 512,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.dim, self.components, self.radius, self.noise, self.seed = dim, components, radius, noise, seed
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.means = mixture_means(dim, components, radius, seed)
        self._data: dict[str, TensorDataset] = {}

    def sample(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed)
        label = torch.randint(0, self.components, (n,), generator=g)
        return self.means[label] + self.noise * torch.randn(n, self.dim, generator=g), label

    def setup(self, stage: str | None = None) -> None:
        for i, (split, n) in enumerate(self.sizes.items()):
            if split not in self._data:
                x, label = self.sample(n, self.seed * 100 + i + 1)
                self._data[split] = TensorDataset(x, label)

    def dataset(self, split: Literal["train", "val", "test"]) -> Dataset:
        self.setup()
        return self._data[split]

    def collate(self, examples: list[tuple[Tensor, Tensor]]) -> Batch:
        x = torch.stack([e[0] for e in examples])
        return {"x": x, "label": torch.stack([e[1] for e in examples]), "property": x[:, 0].clone()}

    def batch_from_records(self, records: list[list[float]]) -> Batch:
        """Vectors of ``dim`` numbers -> a batch (label -1: unknown)."""
        x = torch.tensor(records, dtype=torch.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"toy records must be vectors of {self.dim} numbers (got shape {tuple(x.shape)})")
        return self.collate([(row, torch.tensor(-1)) for row in x])

    def records_from_batch(self, batch: Batch) -> list[list[float]]:
        return batch["x"].detach().cpu().tolist()

    @classmethod
    def model_sizes(cls, **init_args) -> dict[str, int]:
        return {"dim": init_args["dim"]}

    def check_compatible(self, encoder: Encoder, decoder: Decoder) -> None:
        for name, part in (("encoder", encoder), ("decoder", decoder)):
            if getattr(part, "dim", self.dim) != self.dim:
                raise ValueError(
                    f"model.{name}.init_args.dim is {part.dim} but the toy data has dim {self.dim}; "
                    f"set both to the same value"
                )

    def prediction_metrics(self, task: PredictTask) -> list[PredictionMetric]:
        if task == "reconstruct":
            return [MeanOf({"mse": lambda o: ((o["output"]["x"] - o["input"]["x"]) ** 2).mean(1)})]
        if task == "generate":
            return [
                MeanOf({"mean_distance_to_nearest_mean": lambda o: self._nearest(o)[0]}),
                Reservoir(lambda o: o["output"]["x"].float(), self._sample_metrics, capacity=2000),
            ]
        if task == "transfer":  # the true mixture component nearest to each output
            return [MeanOf({"target_rate": lambda o: (self._nearest(o)[1] == o["target"]).float()})]
        return []

    def _nearest(self, outputs: Batch) -> tuple[Tensor, Tensor]:
        x = outputs["output"]["x"].float()
        nearest = torch.cdist(x, self.means.to(x.device)).min(dim=1)
        return nearest.values, nearest.indices

    def _sample_metrics(self, x: Tensor) -> dict[str, float]:
        """MMD to fresh data and component coverage, on at most 2,000 samples per rank."""
        ref = self.sample(x.shape[0], self.seed * 100 + 99)[0].to(x.device)
        covered = torch.cdist(x, self.means.to(x.device)).argmin(dim=1).unique().numel()
        return {
            "mmd_to_data": mmd_rbf(x.cpu(), ref.cpu()),
            "component_coverage": covered / self.components,
            "mmd_samples": float(x.shape[0]),
        }
