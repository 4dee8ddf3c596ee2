"""Training batches of near-equal length, so that almost every processed token is a real one.

transformers' `LengthGroupedSampler` sorts by length only inside random mega-batches of 50
batches; on DailyDialog that still leaves about 30% of the processed tokens as padding. Here the
whole training set is sorted by length, with a fresh random tie-break each epoch (most lengths
are shared by hundreds of rows, so batch membership still changes between epochs), cut into
batches, and the batches are visited in random order (the one short batch last).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def length_bucket_order(lengths: Sequence[int], batch_size: int) -> list[int]:
    """Positions in `lengths` that form length-sorted batches of `batch_size`, the batches in random
    order, from torch's global generator."""
    lengths = torch.as_tensor(list(lengths), dtype=torch.float64)
    tie_break = torch.rand(len(lengths), dtype=torch.float64)
    by_length = torch.argsort(lengths + tie_break)
    # The DataLoader cuts this stream every batch_size rows, so the one short batch must come
    # last; it takes the shortest rows, which pad least.
    short = len(by_length) % batch_size
    batches = list(torch.split(by_length[short:], batch_size))
    order = [row for position in torch.randperm(len(batches)).tolist() for row in batches[position].tolist()]
    return order + by_length[:short].tolist()


class LengthBucketSampler(Sampler[int]):
    """Row indices that form length-sorted batches of `batch_size`, the batches in random order.

    Randomness comes from torch's global generator, which Trainer seeds and checkpoints, so runs
    are reproducible and resume where they stopped.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        yield from length_bucket_order(self.lengths, self.batch_size)
