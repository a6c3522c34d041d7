"""Judging attribute transfer (``diled predict --prediction.task transfer``) on images.

The core moves each latent towards a target class and decodes it; this module says how often that
worked: a small CNN on pixels (:class:`PixelClassifier`), trained on labelled real images the model did
not train on (the ``val`` split by default), classifies every manipulated image, and
:class:`TransferAccuracy` reports

* ``target_accuracy``: the share of manipulated images classified as their target class;
* ``input_target_accuracy``: the same share for the unmanipulated inputs (the baseline);
* ``source_accuracy``: the share of manipulated images still classified as their source class (over
  the rows whose source class is known);
* ``classifier_accuracy``: the classifier's own accuracy on real images it did not train on, with
  ``classifier_train_images`` and ``classifier_test_images``;
* ``transfer_rows``: the rows these shares are over: those whose target differs from their known
  source class (an unknown source, −1, counts as different).

The classifier is trained once per predict run, on the first batch's device, from a fixed seed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from diled_core import Batch, PredictionMetric
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["ClassifierOptions", "PixelClassifier", "TransferAccuracy", "train_classifier"]

log = logging.getLogger(__name__)
MIN_IMAGES = 10  # labelled real images below which no classifier is trained

#: ``n -> batches of (images [b, C, H, W] in [-1, 1], labels [b])``, at most ``n`` images in all
LabelledImages = Callable[[int], Iterator[tuple[Tensor, Tensor]]]


@dataclass(frozen=True)
class ClassifierOptions:
    """``steps``: Adam steps of the evaluation classifier (0: no transfer metric); ``images``: labelled
    real images it may use (a fifth held out for its own accuracy); ``split``: where they come from."""

    steps: int = 500
    images: int = 5000
    split: str = "val"
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0


class PixelClassifier(nn.Module):
    """Images ``[B, C, H, W]`` in [-1, 1] -> class logits ``[B, num_classes]``: two 3×3 conv layers (32
    and 64 channels, ReLU, 2×2 max pooling after each), then a 128-unit hidden layer (the classic small
    MNIST CNN; about 90 % on Fashion-MNIST after a few hundred steps)."""

    def __init__(self, channels: int, image_size: int, num_classes: int) -> None:
        super().__init__()
        side = image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.float())

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """The most likely class of each image ``[B]``."""
        if not len(images):
            return torch.zeros(0, dtype=torch.long, device=images.device)
        return torch.cat([self(x).argmax(1) for x in images.split(batch_size)])


def train_classifier(
    images: Tensor, labels: Tensor, options: ClassifierOptions
) -> tuple[PixelClassifier, dict[str, float]]:
    """Fit a :class:`PixelClassifier` on four fifths of the labelled ``images`` (seeded shuffle) and
    measure its accuracy on the rest. Returns the classifier (eval mode) and its figures."""
    g = torch.Generator().manual_seed(options.seed)
    order = torch.randperm(len(images), generator=g).to(images.device)
    images, labels = images[order], labels[order]
    n_test = max(1, len(images) // 5)
    x_test, y_test, x_train, y_train = images[:n_test], labels[:n_test], images[n_test:], labels[n_test:]
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the global RNG alone
        torch.manual_seed(options.seed)
        net = PixelClassifier(images.shape[1], images.shape[-1], int(labels.max()) + 1).to(images.device)
    opt = torch.optim.Adam(net.parameters(), lr=options.lr)
    for _ in range(options.steps):
        idx = torch.randint(0, len(x_train), (options.batch_size,), generator=g).to(images.device)
        loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    accuracy = (net.predict(x_test) == y_test).float().mean().item()
    return net, {
        "classifier_accuracy": accuracy,
        "classifier_train_images": float(len(x_train)),
        "classifier_test_images": float(n_test),
    }


class TransferAccuracy(PredictionMetric):
    """The ``transfer`` task's classifier figures (see the module docstring).

    Args:
        labelled: ``n ->`` batches of labelled real images (e.g. the ``val`` split); unlabelled rows
            (label −1) are left out.
        options: the classifier's training options.
    """

    def __init__(self, labelled: LabelledImages, options: ClassifierOptions) -> None:
        super().__init__()
        self.labelled, self.options = labelled, options
        self.classifier: PixelClassifier | None = None
        self.figures: dict[str, float] = {}
        for name in ("rows", "known", "target", "input_target", "source"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _fit(self, device: torch.device) -> None:
        batches = [(x, y) for x, y in self.labelled(self.options.images)]
        images = torch.cat([x for x, _ in batches]) if batches else torch.zeros(0)
        labels = torch.cat([y for _, y in batches]) if batches else torch.zeros(0, dtype=torch.long)
        known = labels >= 0
        if int(known.sum()) < MIN_IMAGES:
            log.warning(
                "the transfer metric's classifier needs at least %d labelled real images of the %r split "
                "and found %d; target_accuracy and the classifier figures are left out (NaN). Set "
                "data.init_args.eval_classifier_split to a labelled split, or eval_classifier_steps: 0 to "
                "turn the metric off.",
                MIN_IMAGES,
                self.options.split,
                int(known.sum()),
            )
            self.figures = {"classifier_accuracy": math.nan, "classifier_train_images": 0.0}
            return
        with torch.inference_mode(False), torch.enable_grad():  # also inside Trainer.predict
            x, y = images[known].clone().to(device), labels[known].clone().to(device)
            self.classifier, self.figures = train_classifier(x, y, self.options)

    def update(self, outputs: Batch) -> None:
        device = self.rows.device
        if not self.figures:
            self._fit(device)
        if self.classifier is None:
            return
        target, source = outputs["target"].to(device), outputs["label"].to(device)
        moved = target != source
        if not bool(moved.any()):
            return
        after = self.classifier.predict(outputs["output"]["image"].to(device)[moved])
        before = self.classifier.predict(outputs["input"]["image"].to(device)[moved])
        target, source = target[moved], source[moved]
        self.rows += len(target)
        self.known += (source >= 0).sum()
        self.target += (after == target).sum()
        self.input_target += (before == target).sum()
        self.source += (after == source).sum()

    def compute(self) -> dict[str, float]:
        n, known = float(self.rows), float(self.known)
        return {
            "target_accuracy": float(self.target) / n if n else math.nan,
            "input_target_accuracy": float(self.input_target) / n if n else math.nan,
            "source_accuracy": float(self.source) / known if known else math.nan,
            "transfer_rows": n,
            **self.figures,
        }
