"""Text metrics as pure functions of strings: corpus BLEU from sufficient statistics, distinct-n and
self-BLEU (diversity), and :func:`reference_metrics`, the same generation figures for real sentences.

BLEU is sacreBLEU's (Post 2018): 13a tokenisation, BLEU-4, ``exp`` smoothing, 0-100 scale. Because
corpus BLEU depends only on summed n-gram statistics, it streams exactly (:func:`bleu_statistics`
per batch, summed, then :func:`bleu_from_statistics`).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from sacrebleu.metrics.bleu import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

__all__ = [
    "MAX_ORDER",
    "bleu_from_statistics",
    "bleu_statistics",
    "distinct_n",
    "reference_metrics",
    "self_bleu",
    "words",
]

MAX_ORDER = 4
_TOKENIZE = Tokenizer13a()


def words(text: str) -> list[str]:
    """sacreBLEU's 13a tokens of ``text``."""
    return _TOKENIZE(text.rstrip()).split()


def _ngrams(tokens: Sequence[str]) -> Counter:
    return Counter(
        tuple(tokens[i : i + n]) for n in range(1, MAX_ORDER + 1) for i in range(len(tokens) - n + 1)
    )


def _closest(length: int, ref_lengths: Sequence[int]) -> int:
    return min(ref_lengths, key=lambda r: (abs(r - length), r))


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> list[float]:
    """Summed sufficient statistics ``[correct_1..4, total_1..4, hyp_len, ref_len]`` of one
    reference per hypothesis."""
    stats = [0.0] * (2 * MAX_ORDER + 2)
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = words(hyp), words(ref)
        _add(stats, _ngrams(h), _ngrams(r), len(h), len(r))
    return stats


def _add(stats: list[float], hyp: Counter, clip: Counter, hyp_len: int, ref_len: int) -> None:
    for gram, count in hyp.items():
        n = len(gram) - 1
        stats[MAX_ORDER + n] += count
        stats[n] += min(count, clip.get(gram, 0))
    stats[-2] += hyp_len
    stats[-1] += ref_len


def bleu_from_statistics(stats: Sequence[float]) -> float:
    """Corpus BLEU (0-100) from summed statistics (see :func:`bleu_statistics`)."""
    correct = [int(round(s)) for s in stats[:MAX_ORDER]]
    total = [int(round(s)) for s in stats[MAX_ORDER : 2 * MAX_ORDER]]
    return BLEU.compute_bleu(correct, total, int(stats[-2]), int(stats[-1]), smooth_method="exp").score


def self_bleu(texts: Sequence[str]) -> float:
    """Corpus BLEU of each text against all the other texts as its references (lower: more diverse).
    Multi-reference clipping and the closest reference length, as sacreBLEU does."""
    if len(texts) < 2:
        return float("nan")
    toks = [words(t) for t in texts]
    grams = [_ngrams(t) for t in toks]
    best: dict[tuple, list[tuple[int, int]]] = {}  # gram -> the two largest (count, owner) pairs
    for owner, counts in enumerate(grams):
        for gram, count in counts.items():
            top = best.setdefault(gram, [])
            top.append((count, owner))
            top.sort(reverse=True)
            del top[2:]
    lengths = [len(t) for t in toks]
    stats = [0.0] * (2 * MAX_ORDER + 2)
    for i, counts in enumerate(grams):
        clip = Counter({g: next((c for c, o in best[g] if o != i), 0) for g in counts})
        others = lengths[:i] + lengths[i + 1 :]
        _add(stats, counts, clip, lengths[i], _closest(lengths[i], others))
    return bleu_from_statistics(stats)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over ``texts`` (13a tokens); ``nan`` without any n-gram."""
    grams = [tuple(t[i : i + n]) for t in map(words, texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def reference_metrics(texts: Sequence[str], *, self_bleu_samples: int = 500) -> dict[str, float]:
    """The generation figures of :mod:`diled_text.streaming` for given sentences (e.g. held-out real
    ones, printed next to generated ones): distinct-1/2, self-BLEU on the first ``self_bleu_samples``,
    mean length in 13a tokens, and how many sentences each used."""
    sample = list(texts[:self_bleu_samples])
    return {
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "distinct_samples": float(len(texts)),
        "self_bleu": self_bleu(sample),
        "self_bleu_samples": float(len(sample)),
        "length_words_mean": sum(len(words(t)) for t in texts) / max(len(texts), 1),
    }
