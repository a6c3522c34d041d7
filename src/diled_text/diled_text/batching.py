"""Length bucketing: batches of sentences of similar length, so padding per batch wastes little.

:class:`BucketBatchSampler` takes the indices its ``sampler`` yields (random for training), cuts them
into pools of ``pool_batches`` batches, sorts each pool by length, cuts it into batches and, with
``shuffle``, shuffles the order of the batches. Randomness comes from the sampler and torch's global
generator (seeded once by the CLI), as with a plain shuffled ``DataLoader``.

It is a ``torch.utils.data.BatchSampler``, so under DDP Lightning rebuilds it around a
``DistributedSampler`` (same arguments, the sampler swapped): each rank buckets its own share, and
every rank gets the same number of batches.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, Sampler

__all__ = ["BucketBatchSampler", "padding_fraction"]


class BucketBatchSampler(BatchSampler):
    """Batches of indices from ``sampler`` with similar ``lengths`` (one length per dataset index)."""

    def __init__(
        self,
        sampler: Sampler[int] | Iterable[int],
        batch_size: int,
        drop_last: bool = False,
        *,
        lengths: Sequence[int],
        pool_batches: int = 50,
        shuffle: bool = True,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)  # type: ignore[arg-type]
        self.lengths = torch.as_tensor(list(lengths))
        self.pool_batches, self.shuffle = pool_batches, shuffle

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the sampler (a ``DistributedSampler`` reshuffles by epoch); Lightning calls it."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.long)
        pool = self.batch_size * self.pool_batches  # a multiple of batch_size: only the last batch is short
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [
                chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)
            ]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches)).tolist()]
        return iter(batches)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of padded positions when each batch is padded to its longest example."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - sum(lengths[i] for b in batches for i in b) / padded if padded else 0.0
