"""Protein metrics: reconstruction, sample quality and property correlation (DiLED paper §5 "Proteins").

Distances between sequences are Levenshtein (edit) distances (:mod:`diled_protein.editdistance`).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef
from torchmetrics.functional.classification import multiclass_accuracy

from .editdistance import levenshtein
from .vocab import CANONICAL, RESIDUES

__all__ = [
    "composition_distance",
    "correlations",
    "diversity",
    "exact_match",
    "generation_metrics",
    "identity",
    "is_valid",
    "levenshtein",
    "novelty",
    "perplexity",
    "residue_counts",
    "token_accuracy",
]


def token_accuracy(pred: Tensor, target: Tensor, pad_idx: int, num_tokens: int) -> float:
    """Fraction of ``target [N, L]``'s non-pad positions (residues and ``<eos>``) that ``pred`` matches."""
    return float(
        multiclass_accuracy(
            pred,
            target,
            num_classes=num_tokens,
            average="micro",
            multidim_average="global",
            ignore_index=pad_idx,
        )
    )


def exact_match(pred: Tensor, target: Tensor) -> float:
    """Fraction of rows of ``pred [N, L]`` identical to ``target`` (same residues and same length)."""
    return float(pred.eq(target).all(1).float().mean())


def perplexity(nll: Tensor) -> float:
    """``exp(mean(nll))`` of per-example mean token NLLs ``[N]``."""
    return math.exp(float(nll.float().mean()))


def identity(a: str, b: str) -> float:
    """Position-wise identity: matching positions / the longer length (1.0 for two empty strings)."""
    if not a and not b:
        return 1.0
    return sum(x == y for x, y in zip(a, b)) / max(len(a), len(b))


def is_valid(sequence: str) -> bool:
    """A valid generated sequence: non-empty, only the 20 canonical amino acids."""
    return bool(sequence) and all(c in CANONICAL for c in sequence)


def novelty(
    samples: Sequence[str], reference: Sequence[str], max_reference: int = 5000, seed: int = 0
) -> dict[str, float]:
    """Novelty of ``samples`` w.r.t. the training set ``reference``.

    Returns ``novelty`` (fraction of samples not in the reference, exact match over the whole set) and
    ``novelty_median_min_edit_distance`` (median over samples of the distance to the nearest reference
    sequence, against at most ``max_reference`` reference sequences drawn with ``seed``).
    """
    ref_set = set(reference)
    frac = sum(s not in ref_set for s in samples) / max(len(samples), 1)
    ref = list(reference)
    if len(ref) > max_reference:
        ref = random.Random(seed).sample(ref, max_reference)
    if not samples or not ref:
        return {"novelty": frac, "novelty_median_min_edit_distance": math.nan}
    nearest = levenshtein(samples, ref).min(1)
    return {"novelty": frac, "novelty_median_min_edit_distance": float(np.median(nearest))}


def diversity(samples: Sequence[str]) -> float:
    """Mean edit distance over all unordered pairs of samples (nan for fewer than two)."""
    if len(samples) < 2:
        return math.nan
    d = levenshtein(samples, samples)
    return float(d[np.triu_indices(len(samples), k=1)].mean())


def residue_counts(sequences: Iterable[str]) -> np.ndarray:
    """How often each of :data:`~diled_protein.vocab.RESIDUES` occurs in ``sequences`` ->
    ``[len(RESIDUES)]`` float64 (other characters are not counted)."""
    counts = Counter("".join(sequences))
    return np.array([counts[r] for r in RESIDUES], dtype=np.float64)


def composition_distance(counts: np.ndarray, reference: np.ndarray) -> float:
    """Total variation distance between two amino-acid compositions given as :func:`residue_counts`:
    half the L1 distance between the frequency vectors, from 0 (the same composition) to 1 (no residue
    in common); nan when either has no residues."""
    if counts.sum() == 0 or reference.sum() == 0:
        return math.nan
    return float(0.5 * np.abs(counts / counts.sum() - reference / reference.sum()).sum())


def generation_metrics(
    samples: Sequence[str], train: Sequence[str], max_reference: int = 5000
) -> dict[str, float]:
    """Validity, uniqueness, novelty, diversity, length and composition statistics of generated sequences.

    ``validity``: non-empty and only the 20 canonical amino acids; ``uniqueness``: distinct valid /
    valid; ``novelty`` and ``novelty_median_min_edit_distance`` (:func:`novelty`) and ``diversity``
    (mean pairwise edit distance, :func:`diversity`) over all samples; lengths of samples vs the
    training set; ``composition_distance``: :func:`composition_distance` of the samples' amino-acid
    frequencies to the training set's.
    """
    valid = [s for s in samples if is_valid(s)]
    lens = torch.tensor([len(s) for s in samples], dtype=torch.float32)
    data_lens = torch.tensor([len(s) for s in train], dtype=torch.float32)
    return {
        "validity": len(valid) / max(len(samples), 1),
        "uniqueness": len(set(valid)) / len(valid) if valid else 0.0,
        **novelty(samples, train, max_reference),
        "diversity": diversity(samples),
        "length_mean": float(lens.mean()) if len(lens) else math.nan,
        "length_std": float(lens.std()) if len(lens) > 1 else math.nan,
        "data_length_mean": float(data_lens.mean()) if len(data_lens) else math.nan,
        "data_length_std": float(data_lens.std()) if len(data_lens) > 1 else math.nan,
        "composition_distance": composition_distance(residue_counts(samples), residue_counts(train)),
    }


def correlations(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Spearman and Pearson correlation of predictions ``[N]`` with true values ``[N]`` (N >= 2)."""
    pred, target = pred.float().flatten(), target.float().flatten()
    if len(pred) < 2:
        return {}
    return {
        "spearman": float(spearman_corrcoef(pred, target)),
        "pearson": float(pearson_corrcoef(pred, target)),
    }
