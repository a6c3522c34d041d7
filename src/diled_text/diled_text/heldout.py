"""Held-out real sentences and the options of model-based evaluation (the data module's
``reference_lm``, ``feature_model``, ``eval_samples``, ``eval_split``, ``classifier_split``), shared by
:mod:`diled_text.evaluation` and :mod:`diled_text.transfer`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from torch import Tensor

from .reference_lm import DEFAULT_REFERENCE_LM

__all__ = ["HeldOut", "HeldOutFn", "Split", "TextEvaluation"]

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class HeldOut:
    """Held-out real sentences as the decoder's tokenizer writes them, their labels (``nan``:
    unlabelled) and lengths (decoder tokens between BOS and EOS)."""

    texts: list[str]
    labels: Tensor
    lengths: Tensor


#: ``(split, at most n or None: all) -> HeldOut`` (the data module's :meth:`held_out`)
HeldOutFn = Callable[[Split, "int | None"], HeldOut]


@dataclass(frozen=True)
class TextEvaluation:
    """What ``diled predict`` measures with models (the data module's ``reference_lm``,
    ``feature_model``, ``eval_samples``, ``eval_split``, ``classifier_split``)."""

    reference_lm: str | None = DEFAULT_REFERENCE_LM
    feature_model: str | None = None
    samples: int = 1000
    split: Split = "test"
    classifier_split: Split = "val"
