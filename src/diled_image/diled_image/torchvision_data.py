"""Torchvision datasets (MNIST, FashionMNIST, CIFAR10, CelebA) read from the user's local files; nothing is
downloaded unless ``download: true`` is set."""

from __future__ import annotations

from typing import Any, Literal

from torch.utils.data import Dataset

from .datamodule import ImageDataModule, Split
from .datasets import TorchvisionImages, carve
from .records import ImageDataError

__all__ = ["TORCHVISION", "TorchvisionDataModule"]

#: torchvision datasets read from a local root: (channels, height, width) of their images
TORCHVISION = {
    "MNIST": (1, 28, 28),
    "FashionMNIST": (1, 28, 28),
    "CIFAR10": (3, 32, 32),
    "CelebA": (3, 218, 178),
}


class TorchvisionDataModule(ImageDataModule):
    """MNIST, FashionMNIST, CIFAR10 or CelebA through torchvision, from files under ``root``.

    Nothing is downloaded unless ``download: true`` is set. MNIST-style sets carve ``val_fraction`` of
    their training set (seeded by ``split_seed``); CelebA has its own splits and may take one of its 40
    binary attributes as the label (``label_attr``, e.g. ``Smiling``).
    """

    def __init__(
        self,
        name: Literal["MNIST", "FashionMNIST", "CIFAR10", "CelebA"],
        root: str,
        *,
        download: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        label_attr: str | None = None,
        convert: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if name not in TORCHVISION:
            raise ValueError(
                f"TorchvisionDataModule: unknown dataset {name!r}; choose one of {', '.join(TORCHVISION)}."
            )
        native, h, w = TORCHVISION[name]
        if native != self.channels and not convert:
            raise ImageDataError(
                f"{name} images have {native} channel(s) but channels={self.channels}; "
                f"set channels: {native}, "
                "or convert: true to convert them."
            )
        self.check_native_size(name, h, w)
        self.name, self.root, self.download, self.val_fraction = name, root, download, val_fraction
        self.split_seed, self.label_attr, self.convert = split_seed, label_attr, convert

    def _open(self, **kwargs: Any) -> Any:
        import torchvision.datasets as tvd

        try:
            return getattr(tvd, self.name)(self.root, download=self.download, **kwargs)
        except (RuntimeError, FileNotFoundError) as err:
            raise ImageDataError(
                f"torchvision's {self.name} was not found under {self.root} "
                f"({' '.join(str(err).split())[:200]}). "
                f"Put its files there (the layout torchvision.datasets.{self.name} expects), fix "
                "data.init_args.root, or set data.init_args.download: true to download it (needs internet)."
            ) from None

    def build(self) -> dict[Split, Dataset]:
        make = lambda data, tr, label, idx=None: TorchvisionImages(  # noqa: E731
            data, self.name, self.channels, self.transform(tr), label, idx
        )
        if self.name == "CelebA":
            splits: dict[Split, Dataset] = {}
            for split, tv_split in (("train", "train"), ("val", "valid"), ("test", "test")):
                data = self._open(split=tv_split, target_type="attr")
                splits[split] = make(data, split == "train", self._attr_label(data))
            return splits
        train, test = self._open(train=True), self._open(train=False)
        val_i, train_i = carve(len(train), [self.val_fraction], self.split_seed)
        return {
            "train": make(train, True, int, train_i),
            "val": make(train, False, int, val_i),
            "test": make(test, False, int),
        }

    def _attr_label(self, data: Any) -> Any:
        if self.label_attr is None:
            return lambda target: -1
        if self.label_attr not in data.attr_names:
            raise ValueError(
                f"CelebA has no attribute {self.label_attr!r}; "
                f"choose one of {', '.join(data.attr_names[:40])}."
            )
        k = data.attr_names.index(self.label_attr)
        return lambda target: int(target[k])
