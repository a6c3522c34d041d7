"""Generated sentences against held-out real ones (DiLED §5 "Text": PPL, MAUVE, diversity), offline.

Metrics of ``generate`` beside :mod:`diled_text.streaming`'s, each with the same figure for held-out
real sentences (``real_*``: the first ``samples`` sentences of ``split``, written the way the decoder's
tokenizer writes them, e.g. lower-cased and cut to the block size, as generated text is):

==============================  ====================================================================
``ref_ppl_<lm>``                perplexity under a frozen reference LM (:mod:`diled_text.reference_lm`)
                                over every sample, ``_tokens`` the tokens scored; ``real_ref_ppl_<lm>``
``mauve_<features>``            MAUVE (Pillutla et al. 2021, ``mauve-text``) of the first ``samples``
                                generated sentences against the held-out ones, on frozen features
                                (:mod:`diled_text.features`; default ``minilm``, not the paper's
                                GPT-2-large, so compare only with figures on the same features), with
                                ``_samples`` / ``_real_samples``; ``real_mauve_<features>``: MAUVE of the
                                ``classifier_split`` sentences against the ``split`` ones (what real text
                                scores with as many rows)
``real_distinct_1`` …           distinct-1/2, self-BLEU (with their ``_samples``), ``real_length_mean``
                                (decoder tokens, EOS excluded, as ``length_mean``), ``real_sentences``
==============================  ====================================================================

Model-based metrics load their models when ``diled predict`` starts; states stay bounded (two sums,
and a :class:`~diled_core.Reservoir` of at most ``samples`` feature rows per rank).
"""

from __future__ import annotations

import math
from typing import Callable

from diled_core import Batch, PredictionMetric, PredictTask, Reservoir
from torch import Tensor

from .features import SentenceFeatures
from .heldout import HeldOutFn, TextEvaluation
from .reference_lm import ReferencePerplexity, load_reference_lm
from .textmetrics import reference_metrics
from .tokenizer import TextTokenizer
from .transfer import AttributeClassifier, TransferAccuracy

__all__ = [
    "HeldOutFigures",
    "evaluation_metrics",
    "generation_metrics",
    "mauve_metric",
    "mauve_score",
    "transfer_metrics",
]


def mauve_score(p: Tensor, q: Tensor) -> float:
    """MAUVE of two feature sets ``[n, F]`` / ``[m, F]`` (``mauve-text`` defaults: buckets = n/10,
    PCA to 90 % variance, scaling 5, seed 25); ``nan`` with fewer than 2 rows on a side."""
    if min(len(p), len(q)) < 2:
        return math.nan
    import mauve

    out = mauve.compute_mauve(
        p_features=p.double().cpu().numpy(), q_features=q.double().cpu().numpy(), device_id=-1, verbose=False
    )
    return float(out.mauve)


def mauve_metric(
    features: SentenceFeatures,
    texts: Callable[[Batch], list[str]],
    held_out: HeldOutFn,
    options: TextEvaluation,
) -> Reservoir:
    """``mauve_<features>`` of the first ``options.samples`` rows of ``texts(outputs)`` (per rank)."""
    key = f"mauve_{features.name}"

    def measure(generated: Tensor) -> dict[str, float]:
        real = features(held_out(options.split, options.samples).texts)
        other = features(held_out(options.classifier_split, options.samples).texts)
        return {
            key: mauve_score(generated, real),
            f"{key}_samples": float(len(generated)),
            f"{key}_real_samples": float(len(real)),
            f"real_{key}": mauve_score(other, real),
        }

    return Reservoir(lambda o: features(texts(o)), measure, capacity=options.samples)


class HeldOutFigures(PredictionMetric):
    """The diversity and length figures of held-out real sentences (``real_*``); no state."""

    def __init__(self, held_out: HeldOutFn, options: TextEvaluation) -> None:
        super().__init__()
        self.held_out, self.options = held_out, options

    def update(self, outputs: Batch) -> None:
        pass

    def compute(self) -> dict[str, float]:
        real = self.held_out(self.options.split, self.options.samples)
        figures = {f"real_{k}": v for k, v in reference_metrics(real.texts).items()}
        length = real.lengths.double().mean().item() if len(real.lengths) else math.nan
        return {**figures, "real_length_mean": length, "real_sentences": float(len(real.texts))}


def generation_metrics(options: TextEvaluation, held_out: HeldOutFn) -> list[PredictionMetric]:
    """The metrics of ``generate`` above (the models are loaded here)."""
    texts: Callable[[Batch], list[str]] = lambda o: list(o["output"]["text"])  # noqa: E731
    lm = load_reference_lm(options.reference_lm)
    real = (lambda: held_out(options.split, options.samples).texts) if options.samples > 0 else None
    metrics: list[PredictionMetric] = [] if lm is None else [ReferencePerplexity(lm, texts, real)]
    if options.samples > 0:
        features = SentenceFeatures(options.feature_model)
        metrics += [mauve_metric(features, texts, held_out, options), HeldOutFigures(held_out, options)]
    return metrics


def transfer_metrics(
    options: TextEvaluation, held_out: HeldOutFn, tokenizer: TextTokenizer
) -> list[PredictionMetric]:
    """The metrics of ``transfer`` (:mod:`diled_text.transfer`), and the reference-LM perplexity of the
    transferred sentences (``ref_ppl_<lm>``, how fluent they stay)."""
    texts: Callable[[Batch], list[str]] = lambda o: list(o["output"]["text"])  # noqa: E731
    lm = load_reference_lm(options.reference_lm)
    metrics: list[PredictionMetric] = [] if lm is None else [ReferencePerplexity(lm, texts)]
    classifier = AttributeClassifier(SentenceFeatures(options.feature_model))
    return metrics + [TransferAccuracy(classifier, held_out, options, tokenizer)]


def evaluation_metrics(
    task: PredictTask, options: TextEvaluation, held_out: HeldOutFn, tokenizer: TextTokenizer
) -> list[PredictionMetric]:
    """Fresh model-based metrics of ``task``: ``generate`` and ``transfer`` have some, others none."""
    if task == "generate":
        return generation_metrics(options, held_out)
    if task == "transfer":
        return transfer_metrics(options, held_out, tokenizer)
    return []
