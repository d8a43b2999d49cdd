"""The training sampler: seeded, sharded across processes, resumable mid-epoch.

Each epoch draws one permutation of the data set and one 63-bit seed per position from a
generator seeded by ``(seed, epoch)``. The permutation is padded by wrapping to a multiple
of ``world_size * batch_size``; global batch ``b`` is positions ``[b*W*B, (b+1)*W*B)`` and
process ``r`` takes the ``r``-th block of ``B`` of it. Items are ``(index, sample_seed)``:
a data set draws every random choice of a sample (crop, flip, the unpaired partner) from
``sample_seed``, so a sample is the same in whichever worker or process loads it, and a
run resumed at batch ``k`` of an epoch sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShardedSeededSampler(Sampler):
    def __init__(
        self, length: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if length <= 0:
            raise ValueError("the data set is empty")
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        """Batches each process takes per epoch (the same for every process)."""
        return math.ceil(self.length / (self.world_size * self.batch_size))

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch, and skip its first ``start_batch`` batches (resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, seeds) of every position of the padded global order of ``epoch``."""
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)
        order = torch.randperm(self.length, generator=generator)
        seeds = torch.randint(0, 2**62, (self.length,), generator=generator)
        total = self.batches_per_epoch * self.world_size * self.batch_size
        wrap = torch.arange(total) % self.length
        return order[wrap], seeds[wrap]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices, seeds = self.epoch_plan(self.epoch)
        width = self.world_size * self.batch_size
        for batch in range(self.start_batch, self.batches_per_epoch):
            lo = batch * width + self.rank * self.batch_size
            for pos in range(lo, lo + self.batch_size):
                yield int(indices[pos]), int(seeds[pos])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
