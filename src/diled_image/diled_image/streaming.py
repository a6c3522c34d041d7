"""Streaming image metrics of ``diled predict``: per-batch sums, bounded state.

* reconstruct: ``mse``, ``psnr`` (dB) and ``ssim`` on images scaled to [0, 1] (torchmetrics functional,
  per image, averaged), and, with ``fid_images > 0``, ``rfid`` (inputs vs reconstructions);
* generate: ``fid`` of the samples against the reference split;
* interpolate: ``interp_fid_a0.2`` / ``interp_fid_a0.4``: FID of the decoded points at α = 0.2 / 0.4
  (``interpolation_points: 6``, the image default: α = 0, 0.2, …, 1) against the reference split;
* transfer: ``transfer_fid``: FID of the manipulated images against the reference split (how real
  they look; whether they show the target class is :mod:`diled_image.transfer`'s metric).

Every FID comes with the number of images on each side (``<name>_images``, ``fid_reference_images``):
FID is biased by the sample size, so FID-2k is not FID-50k. The Inception feature sums and covariance
sums are ``sum``-reduced across ranks; each rank uses up to ``fid_images`` of its own rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import torch
from diled_core import Batch, MeanOf, PredictionMetric, PredictTask
from diled_core.monitoring import frechet_distance
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from .fid import InceptionFeatures

__all__ = [
    "INTERPOLATION_FID_ALPHAS",
    "FIDMetric",
    "FIDOptions",
    "frechet_distance",
    "pixel_metrics",
    "task_metrics",
]

INTERPOLATION_FID_ALPHAS = (0.2, 0.4)
ImagesFn = Callable[[Batch], Tensor]


@dataclass(frozen=True)
class FIDOptions:
    """``images``: per FID (0: off); ``weights``: a TorchScript Inception file (None: the default);
    ``reference``: the split of real images for generation / interpolation FID."""

    images: int = 0
    weights: str | None = None
    reference: Literal["train", "val", "test"] = "train"


def _unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Per-image SSIM ``[B]`` of images in [0, 1] (Gaussian window 11, or the image size if smaller)."""
    k = min(11, min(a.shape[-2:]) - (1 - min(a.shape[-2:]) % 2))
    return structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=k, reduction="none")


def pixel_metrics() -> MeanOf:
    """``mse``, ``psnr`` and ``ssim`` of reconstructions against their inputs, averaged over images."""

    def mse(o: Batch) -> Tensor:
        return (_unit(o["output"]["image"]) - _unit(o["input"]["image"])).square().flatten(1).mean(1)

    return MeanOf(
        {
            "mse": mse,
            "psnr": lambda o: -10 * torch.log10(mse(o).clamp(min=1e-10)),
            "ssim": lambda o: ssim(_unit(o["output"]["image"]), _unit(o["input"]["image"])),
        }
    )


class FIDMetric(PredictionMetric):
    """FID of one or more groups of images against one real set, streamed through Inception features.

    Args:
        extractor: images -> ``[N, F]`` (:class:`~diled_image.fid.InceptionFeatures`).
        groups: ``{name: outputs -> images [n, C, H, W]}``, each an FID against the real set.
        max_images: images per side and rank.
        real: ``outputs -> images`` (e.g. the inputs of a reconstruction), or ``None`` to read
            ``reference(max_images)`` (an iterator of image batches) at compute time.
    """

    def __init__(
        self,
        extractor: nn.Module,
        groups: dict[str, ImagesFn],
        max_images: int,
        real: ImagesFn | None = None,
        reference: Callable[[int], Iterator[Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.extractor, self.groups, self.max_images = extractor, groups, max_images
        self.real, self.reference = real, reference
        f = int(extractor.num_features)
        for name in ["real", *groups]:
            self.add_state(f"{name}_sum", torch.zeros(f, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{name}_cov", torch.zeros(f, f, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{name}_n", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _add(self, name: str, images: Tensor) -> None:
        room = self.max_images - int(getattr(self, f"{name}_n"))
        if room <= 0 or len(images) == 0:
            return
        feats = self.extractor(images[:room].to(self.real_n.device)).double()
        setattr(self, f"{name}_sum", getattr(self, f"{name}_sum") + feats.sum(0))
        setattr(self, f"{name}_cov", getattr(self, f"{name}_cov") + feats.T @ feats)
        setattr(self, f"{name}_n", getattr(self, f"{name}_n") + len(feats))

    def update(self, outputs: Batch) -> None:
        for name, fn in self.groups.items():
            self._add(name, fn(outputs))
        if self.real is not None:
            self._add("real", self.real(outputs))

    def _stats(self, name: str) -> tuple[Tensor, Tensor, int]:
        n = int(getattr(self, f"{name}_n"))
        mu = getattr(self, f"{name}_sum") / max(n, 1)
        cov = (getattr(self, f"{name}_cov") - n * torch.outer(mu, mu)) / max(n - 1, 1)
        return mu, cov, n

    def compute(self) -> dict[str, float]:
        if self.real is None and self.reference is not None and int(self.real_n) == 0:
            for images in self.reference(self.max_images):
                self._add("real", images)
        mu_r, cov_r, n_r = self._stats("real")
        values: dict[str, float] = {"fid_reference_images": float(n_r)}
        for name in self.groups:
            mu, cov, n = self._stats(name)
            values[name] = frechet_distance(mu_r, cov_r, mu, cov) if min(n, n_r) >= 2 else math.nan
            values[f"{name}_images"] = float(n)
        return values


def _at_alpha(alpha: float) -> ImagesFn:
    return lambda o: o["output"]["image"][torch.isclose(o["alpha"].float(), torch.tensor(alpha), atol=1e-4)]


def task_metrics(
    task: PredictTask, fid: FIDOptions, reference: Callable[[int], Iterator[Tensor]]
) -> list[PredictionMetric]:
    """Fresh metrics of one task (see the module docstring); FID only with ``fid.images > 0``."""
    metrics: list[PredictionMetric] = [pixel_metrics()] if task == "reconstruct" else []
    if fid.images <= 0 or task not in ("reconstruct", "generate", "interpolate", "transfer"):
        return metrics
    extractor = InceptionFeatures(fid.weights)
    if task == "reconstruct":
        metrics.append(
            FIDMetric(
                extractor,
                {"rfid": lambda o: o["output"]["image"]},
                fid.images,
                real=lambda o: o["input"]["image"],
            )
        )
    elif task in ("generate", "transfer"):
        name = "fid" if task == "generate" else "transfer_fid"
        metrics.append(
            FIDMetric(extractor, {name: lambda o: o["output"]["image"]}, fid.images, reference=reference)
        )
    else:
        groups = {f"interp_fid_a{a}": _at_alpha(a) for a in INTERPOLATION_FID_ALPHAS}
        metrics.append(FIDMetric(extractor, groups, fid.images, reference=reference))
    return metrics
