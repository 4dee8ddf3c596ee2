"""Neutral downsampling that changes every epoch: which train rows each epoch uses.

Fixed downsampling (`neutral_keep_ratio` alone) drops the same neutral rows for the whole run, so
a quarter kept means three quarters of the neutral rows are never seen. With
`resample_neutral_each_epoch` every epoch keeps all non-neutral rows and a fresh share of the
neutral ones: a seeded permutation of the neutral rows is cut into `1 / ratio` disjoint shares,
visited in turn (then a new permutation), so four epochs at a quarter see every neutral row once.
Each epoch has the same length and class mix as fixed downsampling, so class weights, the decision
rule's train prior and the head warm start are computed on one epoch's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from emotion_predictor.training.length_bucketing import length_bucket_order


class NeutralRotation:
    """The rows (indices into the full train split) of each epoch."""

    def __init__(self, labels: Sequence[int] | np.ndarray, keep_ratio: float, seed: int) -> None:
        labels = np.asarray(labels)
        self.neutral = np.flatnonzero(labels == 0)
        self.others = np.flatnonzero(labels != 0)
        self.share = math.floor(len(self.neutral) * keep_ratio + 0.5)
        # Shares per permutation; the few rows past the last whole share wait for the next permutation.
        self.shares_per_cycle = max(1, len(self.neutral) // self.share) if self.share else 1
        self.seed = seed

    def __len__(self) -> int:
        return len(self.others) + self.share

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """Sorted row indices of `epoch` (0-based): every non-neutral row and this epoch's neutral share."""
        cycle, position = divmod(epoch, self.shares_per_cycle)
        order = np.random.default_rng([self.seed, cycle]).permutation(self.neutral)
        share = order[position * self.share : (position + 1) * self.share]
        return np.sort(np.concatenate([self.others, share]))


class NeutralRotationSampler(Sampler[int]):
    """The rows of the current epoch (Trainer calls `set_epoch`), shuffled, or in length-sorted
    batches of `batch_size` when `lengths` (of every train row) are given."""

    def __init__(self, rotation: NeutralRotation, lengths: Sequence[int] | None = None, batch_size: int = 1) -> None:
        self.rotation = rotation
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.batch_size = batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rotation)

    def __iter__(self) -> Iterator[int]:
        rows = self.rotation.epoch_indices(self.epoch)
        if self.lengths is None:
            order = torch.randperm(len(rows)).tolist()
        else:
            order = length_bucket_order(self.lengths[rows], self.batch_size)
        yield from rows[order].tolist()
