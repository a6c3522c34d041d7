"""Streaming protein metrics of ``diled predict``: torchmetrics objects updated once per batch.

:func:`task_metrics` gives each task's :class:`~diled_core.PredictionMetric` objects. They are
updated with one batch's outputs on the model's device (tensors may be on a GPU) and reduced across
DDP ranks by torchmetrics. Their values equal the all-at-once functions of :mod:`diled_protein.metrics`
on the concatenated outputs, except the two pairwise generation metrics, which use a bounded sample:

=============  ===================================================================================
reconstruct    ``token_accuracy``, ``exact_match``, ``identity_mean``, ``perplexity`` (exp of the
               mean of the decoder's ``nll`` term; the core adds ``nll_mean`` and ``count``)
generate       ``validity``, ``uniqueness``, ``novelty``, ``length_mean/std``, ``data_length_mean/std``,
               ``composition_distance`` (amino-acid frequencies vs the training set's) over every
               sample; ``diversity`` and ``novelty_median_min_edit_distance`` over the first
               ``capacity`` samples (default 2,000 per rank, at most ``capacity`` in all), which
               ``diversity_samples`` and ``novelty_median_min_edit_distance_samples`` count
encode         ``spearman``, ``pearson`` of the head's prediction against the labelled property
interpolate    ``validity`` of the decoded path points
optimise       ``identity_to_input_mean``, ``validity`` of the optimised sequences (the core adds
               ``pred_before_mean``, ``pred_after_mean``, ``improved_fraction``)
=============  ===================================================================================

States: sums and counts (one per residue type for the composition), one int64 hash per valid generated
sample (uniqueness) and two floats per labelled row (correlations), so memory grows by a few bytes per
row; edit distances (quadratic) run on a :class:`~diled_core.Reservoir` of at most ``capacity`` rows
per rank.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from diled_core import Batch, MeanOf, PredictionMetric, PredictTask, RatioOf, Reservoir
from torch import Tensor

from .metrics import (
    composition_distance,
    correlations,
    diversity,
    identity,
    is_valid,
    novelty,
    residue_counts,
)
from .vocab import RESIDUES, ProteinVocab

#: ``outputs -> (numerator [B], denominator [B])``, as :class:`diled_core.RatioOf` takes
RatioFn = Callable[[Batch], tuple[Tensor, Tensor]]

__all__ = [
    "Correlations",
    "GenerationStats",
    "Perplexity",
    "edit_distance_metrics",
    "sequence_hash",
    "task_metrics",
]


def _cat(state: list[Tensor] | Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """A ``cat`` state as one tensor: a list before the DDP reduction, a tensor after it."""
    if isinstance(state, Tensor):
        return state
    return torch.cat(state) if state else torch.zeros(0, dtype=dtype)


def pad_width(tokens: Tensor, width: int | None, pad_idx: int) -> Tensor:
    """``tokens [B, L]`` padded on the right to ``[B, width]`` (unchanged if ``width`` is ``None``)."""
    if width is None or tokens.shape[1] == width:
        return tokens
    if tokens.shape[1] > width:
        raise ValueError(f"{tokens.shape[1]} token positions do not fit the metric's width {width}")
    return F.pad(tokens, (0, width - tokens.shape[1]), value=pad_idx)


def _aligned(a: Tensor, b: Tensor, pad_idx: int) -> tuple[Tensor, Tensor]:
    """Two token batches ``[B, La]``, ``[B, Lb]`` padded to the same width (batches may differ in width)."""
    width = max(a.shape[1], b.shape[1])
    return pad_width(a, width, pad_idx), pad_width(b, width, pad_idx)


def sequence_hash(sequence: str) -> int:
    """A stable signed 64-bit hash of a sequence (the same on every rank and run, unlike ``hash``)."""
    digest = hashlib.blake2b(sequence.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _strings(vocab: ProteinVocab, tokens: Tensor) -> list[str]:
    return vocab.decode(tokens.detach().cpu())


class Perplexity(PredictionMetric):
    """``perplexity = exp(mean over rows of outputs["loss"]["nll"])``; nothing without an ``nll`` term."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, outputs: Batch) -> None:
        nll = outputs.get("loss", {}).get("nll")
        if nll is not None:
            self.total += nll.detach().double().sum().to(self.total.device)
            self.count += nll.numel()

    def compute(self) -> dict[str, float]:
        return {"perplexity": math.exp((self.total / self.count).item())} if self.count > 0 else {}


class GenerationStats(PredictionMetric):
    """Validity, uniqueness, novelty and length statistics of generated sequences (see
    :func:`diled_protein.metrics.generation_metrics`), streamed.

    ``train``: the training sequences (novelty is exact membership in the whole set; their lengths give
    ``data_length_mean/std``, their residues the reference of ``composition_distance``). States: counts
    and sums, residue counts, and one int64 hash per valid sample.
    """

    def __init__(self, vocab: ProteinVocab, train: Sequence[str] = ()) -> None:
        super().__init__()
        self.vocab, self.train = vocab, frozenset(train)
        lens = torch.tensor([len(s) for s in train], dtype=torch.float32)
        self.data_lengths = {
            "data_length_mean": float(lens.mean()) if len(lens) else math.nan,
            "data_length_std": float(lens.std()) if len(lens) > 1 else math.nan,
        }
        self.data_residues = residue_counts(train)
        for name in ("n", "valid", "novel", "length_sum", "length_sq"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("residues", torch.zeros(len(RESIDUES), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("hashes", [], dist_reduce_fx="cat")  # int64 [valid samples]

    def update(self, outputs: Batch) -> None:
        seqs = _strings(self.vocab, outputs["output"]["tokens"])
        valid = [s for s in seqs if is_valid(s)]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.float64, device=self.n.device)
        self.n += len(seqs)
        self.valid += len(valid)
        self.novel += sum(s not in self.train for s in seqs)
        self.length_sum += lengths.sum()
        self.length_sq += (lengths**2).sum()
        self.residues += torch.from_numpy(residue_counts(seqs)).to(self.residues.device)
        self.hashes.append(
            torch.tensor([sequence_hash(s) for s in valid], dtype=torch.int64, device=self.n.device)
        )

    def compute(self) -> dict[str, float]:
        n, valid = self.n.item(), self.valid.item()
        mean = self.length_sum.item() / n if n else math.nan
        var = (self.length_sq.item() - n * mean**2) / (n - 1) if n > 1 else math.nan
        return {
            "validity": valid / max(n, 1),
            "uniqueness": _cat(self.hashes, torch.int64).unique().numel() / valid if valid else 0.0,
            "novelty": self.novel.item() / max(n, 1),
            "length_mean": mean,
            "length_std": math.sqrt(max(var, 0.0)) if n > 1 else math.nan,
            **self.data_lengths,
            "composition_distance": composition_distance(self.residues.cpu().numpy(), self.data_residues),
        }


def edit_distance_metrics(
    vocab: ProteinVocab,
    train: Sequence[str] = (),
    *,
    width: int | None = None,
    capacity: int = 2000,
    max_reference: int = 5000,
) -> Reservoir:
    """``diversity`` (mean pairwise edit distance) and ``novelty_median_min_edit_distance`` (against at
    most ``max_reference`` training sequences) of the first ``capacity`` generated samples per rank, and
    of at most ``capacity`` of all ranks' together; ``*_samples`` says how many were used.

    ``width``: token rows are padded to it, so that batches of different widths can be kept together.
    """
    reference = list(train)

    def rows(outputs: Batch) -> Tensor:
        return pad_width(outputs["output"]["tokens"], width, vocab.pad_idx)

    def pairwise(tokens: Tensor) -> dict[str, float]:
        seqs = _strings(vocab, tokens[:capacity])
        median = novelty(seqs, reference, max_reference)["novelty_median_min_edit_distance"]
        return {
            "diversity": diversity(seqs),
            "diversity_samples": len(seqs),
            "novelty_median_min_edit_distance": median,
            "novelty_median_min_edit_distance_samples": len(seqs),
        }

    return Reservoir(rows, pairwise, capacity=capacity)


class Correlations(PredictionMetric):
    """Spearman and Pearson correlation of the head's ``prediction`` with the labelled first property
    (``input.property`` where ``input.property_mask``); nothing without a head. State: two floats per
    labelled row (ranks need every value)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("pred", [], dist_reduce_fx="cat")
        self.add_state("target", [], dist_reduce_fx="cat")

    def update(self, outputs: Batch) -> None:
        if "prediction" not in outputs:
            return
        known = outputs["input"]["property_mask"].bool()
        self.pred.append(outputs["prediction"].detach().float().flatten()[known])
        self.target.append(outputs["input"]["property"].detach().float()[known])

    def compute(self) -> dict[str, float]:
        return correlations(_cat(self.pred), _cat(self.target))


def _token_accuracy(vocab: ProteinVocab) -> RatioFn:
    """Matching non-pad target positions (residues and ``<eos>``) / non-pad target positions."""

    def fn(o: Batch) -> tuple[Tensor, Tensor]:
        pred, target = _aligned(o["output"]["tokens"], o["input"]["tokens"], vocab.pad_idx)
        real = target.ne(vocab.pad_idx)
        return (pred.eq(target) & real).sum(1), real.sum(1)

    return fn


def _exact_match(vocab: ProteinVocab) -> Callable[[Batch], Tensor]:
    def fn(o: Batch) -> Tensor:
        pred, target = _aligned(o["output"]["tokens"], o["input"]["tokens"], vocab.pad_idx)
        return pred.eq(target).all(1).double()

    return fn


def _identity(vocab: ProteinVocab) -> Callable[[Batch], Tensor]:
    """Position-wise identity of each output row to its input row ``[B]``."""

    def fn(o: Batch) -> Tensor:
        pairs = zip(_strings(vocab, o["input"]["tokens"]), _strings(vocab, o["output"]["tokens"]))
        return torch.tensor([identity(a, b) for a, b in pairs], dtype=torch.float64)

    return fn


def _validity(vocab: ProteinVocab) -> Callable[[Batch], Tensor]:
    """1 where the output row is non-empty and only canonical residues ``[B]``."""

    def fn(o: Batch) -> Tensor:
        return torch.tensor(
            [is_valid(s) for s in _strings(vocab, o["output"]["tokens"])], dtype=torch.float64
        )

    return fn


def task_metrics(
    task: PredictTask,
    vocab: ProteinVocab,
    train: Sequence[str] = (),
    *,
    width: int | None = None,
    capacity: int = 2000,
) -> list[PredictionMetric]:
    """Fresh streaming metrics of ``task`` (``train``: the training sequences, used by ``generate``;
    ``width``: the token width of the data, ``max_length + 1``; ``capacity``: rows for edit distances)."""
    if task == "reconstruct":
        return [
            RatioOf({"token_accuracy": _token_accuracy(vocab)}),
            MeanOf({"exact_match": _exact_match(vocab), "identity_mean": _identity(vocab)}),
            Perplexity(),
        ]
    if task == "generate":
        return [
            GenerationStats(vocab, train),
            edit_distance_metrics(vocab, train, width=width, capacity=capacity),
        ]
    if task == "encode":
        return [Correlations()]
    if task == "interpolate":
        return [MeanOf({"validity": _validity(vocab)})]
    if task == "optimise":
        return [MeanOf({"identity_to_input_mean": _identity(vocab), "validity": _validity(vocab)})]
    raise ValueError(f"unknown predict task {task!r}")
