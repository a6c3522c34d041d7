"""Map-style image datasets: each item is ``{"image": [C, H, W] float in [-1, 1], "label": int, "id": str}``.

:class:`TensorImages` holds uint8 images in memory (IDX files, synthetic shapes), :class:`FileImages`
decodes files on access, :class:`TorchvisionImages` wraps a torchvision dataset read from a local root.
Each applies the data module's transform (torchvision transforms v2 on uint8 tensors).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from .records import ImageRecord, load_image

__all__ = ["FileImages", "TensorImages", "TorchvisionImages", "synthetic_shapes"]

Transform = Callable[[Tensor], Tensor]


class TensorImages(Dataset):
    """uint8 ``images`` ``[N, C, H, W]``, ``labels`` ``[N]`` and ``ids`` in memory."""

    def __init__(self, images: Tensor, labels: Tensor, ids: Sequence[str], transform: Transform) -> None:
        self.images, self.labels, self.ids, self.transform = images, labels, list(ids), transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.transform(self.images[i]), "label": int(self.labels[i]), "id": self.ids[i]}


class FileImages(Dataset):
    """Image files decoded on access (errors name the file)."""

    def __init__(
        self, records: Sequence[ImageRecord], channels: int, convert: bool, transform: Transform
    ) -> None:
        self.records, self.channels, self.convert, self.transform = (
            list(records),
            channels,
            convert,
            transform,
        )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        image = load_image(rec.path, self.channels, self.convert)
        return {"image": self.transform(image), "label": rec.label, "id": rec.id}


class TorchvisionImages(Dataset):
    """A torchvision dataset of ``(PIL image, target)`` pairs, optionally a subset ``indices``.
    ``label`` maps the target to an int label (-1: none)."""

    def __init__(
        self,
        data: Any,
        name: str,
        channels: int,
        transform: Transform,
        label: Callable[[Any], int],
        indices: Sequence[int] | None = None,
    ) -> None:
        self.data, self.name, self.channels, self.transform, self.label = (
            data,
            name,
            channels,
            transform,
            label,
        )
        self.indices = list(range(len(data))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        j = self.indices[i]
        img, target = self.data[j]
        img = TF.pil_to_tensor(img.convert("L" if self.channels == 1 else "RGB"))
        return {"image": self.transform(img), "label": self.label(target), "id": f"{self.name}/{j}"}


def synthetic_shapes(n: int, channels: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` images of one bright shape on a dark background, uint8 ``[n, channels, size, size]``, and
    their class ``[n]``: 0 square, 1 disc, 2 horizontal bar, 3 vertical bar (random centre, size and
    colour; generated from ``seed`` with a local generator)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    centre = size * (0.3 + 0.4 * torch.rand(n, 2, generator=g))
    radius = size * (0.12 + 0.15 * torch.rand(n, generator=g))
    colour = 0.5 + 0.5 * torch.rand(n, channels, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    dy = (yy[None] - centre[:, 0, None, None]).abs()
    dx = (xx[None] - centre[:, 1, None, None]).abs()
    r = radius[:, None, None]
    masks = torch.stack(
        [
            (dx <= r) & (dy <= r),
            dx.square() + dy.square() <= r.square(),
            (dx <= 1.6 * r) & (dy <= r / 2.5),
            (dy <= 1.6 * r) & (dx <= r / 2.5),
        ]
    )[labels, torch.arange(n)]
    background = 0.1 * torch.rand(n, channels, 1, 1, generator=g)
    images = torch.where(masks[:, None], colour[:, :, None, None], background)
    return (images * 255).round().to(torch.uint8), labels


def carve(n: int, fractions: Sequence[float], seed: int) -> list[list[int]]:
    """A seeded random split of ``range(n)``: one index list per fraction, then the rest (at least one
    example for each non-zero fraction when n allows)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    parts, start = [], 0
    for f in fractions:
        k = max(1, math.floor(n * f)) if f > 0 and n > len(fractions) else math.floor(n * f)
        parts.append(sorted(perm[start : start + k]))
        start += k
    parts.append(sorted(perm[start:]))
    return parts
