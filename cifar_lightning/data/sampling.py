"""Epoch-seeded shuffling: epoch k's order and augmentation depend on (seed, k) alone, so a resumed run replays
exactly what the uninterrupted one did (a ``RandomSampler`` carries its state from epoch to epoch)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

# independent streams derived from (seed, epoch)
ORDER, LOADER, IN_PROCESS_AUGMENTATION, TENSOR_AUGMENTATION = range(4)


def epoch_seed(seed: int, epoch: int, stream: int, *more: int) -> int:
    """A 32-bit seed for one stream of one epoch (and ``more`` keys, e.g. the process's rank);
    SeedSequence keeps nearby inputs uncorrelated."""
    return int(np.random.SeedSequence([seed, epoch, stream, *more]).generate_state(1)[0])


class EpochSeededSampler(Sampler[int]):
    """Random order over ``size`` items, a function of ``(seed, epoch)``; it reseeds the DataLoader's
    ``loader_generator`` (its workers' base seed) too, or with ``num_workers=0`` the augmentation in this process
    (``reseed_in_process``, mixing in ``rank``). ``epoch``: the one about to run (the loader is rebuilt each epoch).
    Not torch's ``DistributedSampler``: its order is a function of (seed, epoch) too, but it leaves the workers' seeds
    to the loader's generator, so their augmentation would not replay."""

    def __init__(
        self,
        size: int,
        seed: int,
        epoch: int = 0,
        loader_generator: torch.Generator | None = None,
        reseed_in_process: Callable[[int], None] | None = None,
        rank: int = 0,
    ) -> None:
        self.rank = rank
        self.size = size
        self.seed = seed
        self.loader_generator = loader_generator
        self.reseed_in_process = reseed_in_process
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.loader_generator is not None:
            self.loader_generator.manual_seed(epoch_seed(self.seed, epoch, LOADER))

    def __len__(self) -> int:
        return self.size

    def permutation(self) -> torch.Tensor:
        """This epoch's order, as a CPU tensor of indices."""
        return torch.randperm(
            self.size, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, ORDER))
        )

    def __iter__(self) -> Iterator[int]:
        if self.reseed_in_process is not None:
            self.reseed_in_process(epoch_seed(self.seed, self.epoch, IN_PROCESS_AUGMENTATION, self.rank))
        yield from self.permutation().tolist()
