"""Fashion-MNIST (Xiao et al. 2017) from its raw IDX files: ``../shared/data/image/fashion-mnist`` or Debian's
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), or any folder given as ``root``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from .datamodule import ImageDataModule, Split
from .datasets import TensorImages, carve
from .idx import read_idx
from .records import ImageDataError

__all__ = ["FASHION_MNIST_CLASSES", "FashionMNISTDataModule", "find_fashion_mnist"]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FASHION_MNIST_DIRS = ("../shared/data/image/fashion-mnist", "/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def find_fashion_mnist(root: str | None) -> Path:
    """The folder with Fashion-MNIST's four IDX files (``.gz`` or not): ``root``, or the first of
    :data:`FASHION_MNIST_DIRS` (Debian's ``dataset-fashion-mnist`` installs the second) that has them."""
    candidates = [root] if root else list(FASHION_MNIST_DIRS)
    for folder in map(Path, candidates):
        if all(_idx_file(folder, n) is not None for pair in FASHION_MNIST_FILES.values() for n in pair):
            return folder
    raise ImageDataError(
        "Fashion-MNIST's IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...) were "
        f"not found in {' or '.join(candidates)}; set data.init_args.root to the folder that holds them, or "
        "install "
        "Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist)."
    )


def _idx_file(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60,000 + 10,000 28×28 grayscale images, 10 classes) from its raw IDX files.

    Args:
        root: the folder with the IDX files (default: see :func:`find_fashion_mnist`).
        val_size: training images held out for validation (seeded by ``split_seed``).
        max_train: use at most this many training images (``None``: all).
        The other arguments: :class:`ImageDataModule` (``channels: 1``; ``image_size: 28``, or 32
            with ``pad: 2``).
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        val_size: int = 5000,
        split_seed: int = 0,
        max_train: int | None = None,
        channels: int = 1,
        image_size: int = 28,
        **kwargs: Any,
    ) -> None:
        super().__init__(channels=channels, image_size=image_size, **kwargs)
        if channels != 1:
            raise ImageDataError("Fashion-MNIST images are grayscale; set data.init_args.channels: 1.")
        self.check_native_size("Fashion-MNIST", 28, 28)
        self.root, self.val_size, self.split_seed, self.max_train = root, val_size, split_seed, max_train
        self.class_names = list(FASHION_MNIST_CLASSES)

    def _read(self, folder: Path, split: str) -> tuple[Tensor, Tensor]:
        images, labels = (read_idx(_idx_file(folder, n)) for n in FASHION_MNIST_FILES[split])  # type: ignore[arg-type]
        return images[:, None], labels.long()

    def build(self) -> dict[Split, Dataset]:
        folder = find_fashion_mnist(self.root)
        (train_x, train_y), (test_x, test_y) = self._read(folder, "train"), self._read(folder, "test")
        val_i, train_i = carve(len(train_x), [self.val_size / len(train_x)], self.split_seed)
        train_i = train_i[: self.max_train] if self.max_train is not None else train_i
        part = lambda x, y, idx, prefix, tr: TensorImages(  # noqa: E731
            x[idx], y[idx], [f"{prefix}{i}" for i in idx], self.transform(tr)
        )
        everything = list(range(len(test_x)))
        return {
            "train": part(train_x, train_y, train_i, "train", True),
            "val": part(train_x, train_y, val_i, "train", False),
            "test": part(test_x, test_y, everything, "test", False),
        }
