"""Attribute-transfer accuracy (DiLED §5 "Text": sentiment transfer on Yelp, there judged by a trained
sentiment classifier): the share of transferred sentences an evaluation classifier assigns to the
target class.

The evaluation classifier is a logistic regression (scikit-learn) on frozen sentence features
(:mod:`diled_text.features`, default all-MiniLM-L6-v2: ``minilm_logreg`` in metric keys), trained on
the labelled held-out sentences of ``classifier_split`` (never the training split the model saw), as
the decoder's tokenizer writes them. Metrics of the ``transfer`` task (``<clf>`` is the classifier's
name):

====================================  ==============================================================
``transfer_accuracy_<clf>``           outputs classified as their target class, over rows with a
                                      known target (``transfer_rows``)
``transfer_accuracy_unchanged_<clf>`` the same for the unchanged inputs (what doing nothing scores)
``classifier_accuracy_<clf>``         the classifier's accuracy on the labelled held-out sentences of
                                      ``split`` (``classifier_test_sentences``), so a reader can judge it;
                                      ``classifier_train_sentences`` it was trained on
====================================  ==============================================================
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
from diled_core import Batch, PredictionMetric
from torch import Tensor

from .decoder import target_tokens
from .features import SentenceFeatures
from .heldout import HeldOut, HeldOutFn, TextEvaluation
from .tokenizer import TextTokenizer

__all__ = ["AttributeClassifier", "TransferAccuracy", "labelled"]

log = logging.getLogger(__name__)


def labelled(held: HeldOut) -> tuple[list[str], Tensor]:
    """The sentences with a label and their classes (long; labels are whole class numbers)."""
    keep = [i for i, y in enumerate(held.labels.tolist()) if not math.isnan(y) and y >= 0]
    return [held.texts[i] for i in keep], held.labels[keep].round().long()


class AttributeClassifier:
    """Logistic regression on frozen sentence features: ``fit(texts, classes)``, ``predict(texts)``."""

    def __init__(self, features: SentenceFeatures, *, c: float = 1.0) -> None:
        self.features, self.c = features, c
        self.name = f"{features.name}_logreg"
        self.model = None

    def fit(self, texts: list[str], classes: Tensor) -> AttributeClassifier:
        from sklearn.linear_model import LogisticRegression

        if len(set(classes.tolist())) < 2:
            raise ValueError(
                f"need sentences of at least two classes, got classes {sorted(set(classes.tolist()))}"
            )
        x = self.features(texts).double().cpu().numpy()
        self.model = LogisticRegression(C=self.c, max_iter=2000).fit(x, classes.numpy())
        return self

    def predict(self, texts: list[str]) -> Tensor:
        """Classes ``[N]`` (long, CPU)."""
        assert self.model is not None, "fit the classifier first"
        if not texts:
            return torch.zeros(0, dtype=torch.long)
        x = self.features(texts).double().cpu().numpy()
        return torch.as_tensor(self.model.predict(x), dtype=torch.long)


class TransferAccuracy(PredictionMetric):
    """The metrics of the module docstring. The classifier is fitted before the first batch (every
    rank fits the same one); without two labelled classes in ``classifier_split`` it is skipped, with a
    logged reason, and the metric reports nothing."""

    def __init__(
        self,
        classifier: AttributeClassifier,
        held_out: HeldOutFn,
        options: TextEvaluation,
        tokenizer: TextTokenizer,
    ) -> None:
        super().__init__()
        self.classifier, self.held_out, self.options = classifier, held_out, options
        self.features = classifier.features  # a submodule: moved to the model's device with the metric
        self.inputs: Callable[[Batch], list[str]] = lambda o: tokenizer.decode_batch(
            target_tokens(o["input"])[0]
        )
        self.fitted: bool | None = None  # None: not tried yet; False: skipped
        self.train_sentences = 0
        for name in ("hits", "hits_unchanged", "rows"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _fit(self) -> bool:
        if self.fitted is None:
            texts, classes = labelled(self.held_out(self.options.classifier_split, None))
            try:
                self.classifier.fit(texts, classes)
                self.fitted, self.train_sentences = True, len(texts)
            except ValueError as err:
                log.warning(
                    "transfer accuracy is skipped: the %s split has no classifier to train (%s)",
                    self.options.classifier_split,
                    err,
                )
                self.fitted = False
        return self.fitted

    def update(self, outputs: Batch) -> None:
        if not self._fit():
            return
        known = (outputs["target"] >= 0).cpu()
        rows = torch.nonzero(known).flatten().tolist()
        if not rows:
            return
        target = outputs["target"].cpu()[known]
        out = self.classifier.predict([outputs["output"]["text"][i] for i in rows])
        unchanged = self.classifier.predict([self.inputs(outputs)[i] for i in rows])
        self.hits += (out == target).sum().to(self.hits)
        self.hits_unchanged += (unchanged == target).sum().to(self.hits)
        self.rows += len(rows)

    def compute(self) -> dict[str, float]:
        if not self._fit():
            return {}
        name, rows = self.classifier.name, float(self.rows)
        texts, classes = labelled(self.held_out(self.options.split, None))
        correct = (self.classifier.predict(texts) == classes).double().mean().item() if texts else math.nan
        return {
            f"transfer_accuracy_{name}": float(self.hits) / rows if rows else math.nan,
            f"transfer_accuracy_unchanged_{name}": float(self.hits_unchanged) / rows if rows else math.nan,
            "transfer_rows": rows,
            f"classifier_accuracy_{name}": correct,
            "classifier_train_sentences": float(self.train_sentences),
            "classifier_test_sentences": float(len(texts)),
        }
