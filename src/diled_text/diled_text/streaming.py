"""Streaming text metrics of ``diled predict``: torchmetrics objects updated once per batch.

=============  ===================================================================================
reconstruct    ``bleu`` (corpus BLEU, exact: summed sufficient statistics), ``token_accuracy``
               (decoded token = target token, over the real target tokens after BOS, EOS included),
               ``exact_match`` (the whole token sequence); the core adds ``nll_mean`` and ``count``
generate       ``length_mean`` (tokens, EOS excluded) over every sample; ``distinct_1``,
               ``distinct_2``, ``self_bleu`` over the first ``capacity`` samples (default 2,000 per
               rank), counted by ``distinct_samples``; self-BLEU on at most ``self_bleu_samples``
interpolate    ``length_mean`` of the decoded path points
transfer       ``bleu_to_input`` (corpus BLEU of each transferred sentence against its input: how much
               content is kept), and ``distinct_1``, ``distinct_2``, ``self_bleu`` as for generate
               (degenerate outputs can fool a sentiment classifier; these show it)
=============  ===================================================================================

The reference of a reconstruction is the input as the decoder's tokenizer sees it (e.g. lower-cased
and cut to the block size), so BLEU measures the model, not the tokenizer. States are sums, except the
generation reservoir of at most ``capacity`` rows of ``WIDTH`` token ids per rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diled_core import Batch, MeanOf, PredictionMetric, PredictTask, RatioOf, Reservoir
from torch import Tensor

from .decoder import target_tokens
from .textmetrics import MAX_ORDER, bleu_from_statistics, bleu_statistics, distinct_n, self_bleu
from .tokenizer import TextTokenizer

__all__ = ["WIDTH", "Bleu", "aligned", "generation_diversity", "task_metrics"]

#: token ids kept per generated row in the diversity reservoir (longer rows are cut)
WIDTH = 256


def aligned(a: Tensor, b: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """Two ``[B, La]`` / ``[B, Lb]`` tensors right-padded with ``pad`` to the same width."""
    width = max(a.shape[1], b.shape[1])
    return F.pad(a, (0, width - a.shape[1]), value=pad), F.pad(b, (0, width - b.shape[1]), value=pad)


def _token_hits(o: Batch) -> tuple[Tensor, Tensor]:
    """Per row: target tokens after BOS the decoder got right at their position, and how many there are."""
    target, mask = target_tokens(o["input"])
    out, out_mask = o["output"]["input_ids"], o["output"]["attention_mask"]
    target, out = aligned(target, out, -1)
    mask, out_mask = aligned(mask, out_mask, 0)
    real = mask[:, 1:].bool()
    hits = (target[:, 1:] == out[:, 1:]) & real & out_mask[:, 1:].bool()
    return hits.sum(1).float(), real.sum(1).float()


def _exact(o: Batch) -> Tensor:
    """1 per row whose decoded tokens equal the target's (every token and the length), else 0."""
    hits, total = _token_hits(o)
    same_length = o["output"]["attention_mask"].sum(1) == target_tokens(o["input"])[1].sum(1)
    return ((hits == total) & same_length.to(hits.device)).float()


class Bleu(PredictionMetric):
    """Corpus BLEU of ``outputs["output"]["text"]`` against the decoded target ids of the input, reported
    as ``key``."""

    def __init__(self, tokenizer: TextTokenizer, key: str = "bleu") -> None:
        super().__init__()
        self.tokenizer, self.key = tokenizer, key
        self.add_state("stats", torch.zeros(2 * MAX_ORDER + 2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, outputs: Batch) -> None:
        refs = self.tokenizer.decode_batch(target_tokens(outputs["input"])[0])
        stats = bleu_statistics(outputs["output"]["text"], refs)
        self.stats += torch.tensor(stats, dtype=torch.float64, device=self.stats.device)

    def compute(self) -> dict[str, float]:
        return {self.key: bleu_from_statistics(self.stats.tolist())}


def generation_diversity(
    tokenizer: TextTokenizer, *, capacity: int = 2000, self_bleu_samples: int = 500
) -> Reservoir:
    """distinct-1/2 and self-BLEU of the first ``capacity`` generated rows (per rank)."""

    def rows(outputs: Batch) -> Tensor:
        ids = outputs["output"]["input_ids"][:, :WIDTH]
        return F.pad(ids, (0, WIDTH - ids.shape[1]), value=tokenizer.pad_id)

    def measure(ids: Tensor) -> dict[str, float]:
        texts = tokenizer.decode_batch(ids[:capacity])
        return {
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "distinct_samples": float(len(texts)),
            "self_bleu": self_bleu(texts[:self_bleu_samples]),
            "self_bleu_samples": float(min(len(texts), self_bleu_samples)),
        }

    return Reservoir(rows, measure, capacity=capacity)


def task_metrics(task: PredictTask, tokenizer: TextTokenizer) -> list[PredictionMetric]:
    """Fresh metrics of ``task`` (see the module docstring)."""
    eos = tokenizer.eos_id

    def length(o: Batch) -> Tensor:
        ids, mask = o["output"]["input_ids"][:, 1:], o["output"]["attention_mask"][:, 1:]
        return (mask.bool() & (ids != eos)).sum(1).float()

    if task == "reconstruct":
        return [Bleu(tokenizer), RatioOf({"token_accuracy": _token_hits}), MeanOf({"exact_match": _exact})]
    if task == "generate":
        return [MeanOf({"length_mean": length}), generation_diversity(tokenizer)]
    if task == "interpolate":
        return [MeanOf({"length_mean": length})]
    if task == "transfer":
        return [Bleu(tokenizer, key="bleu_to_input"), generation_diversity(tokenizer)]
    return []
