"""The ``device`` pipeline: a split copied to the training device once, each batch an index into it and
``tensor_augment``'s gather; no loader worker, no per-image Python, no read back from the device."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from cifar_lightning.data.augment import Augmentation
from cifar_lightning.data.sampling import TENSOR_AUGMENTATION, EpochSeededSampler, epoch_seed
from cifar_lightning.data.tensor_augment import augment, draw, fill_value, normalization, normalize, to_device

Batch = tuple[Tensor, Tensor]


class DeviceSplit:
    """uint8 images, int64 labels and the statistics that normalise them, on ``device`` (shared memory on a CPU)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, mean: Sequence[float], std: Sequence[float], device: torch.device
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
        self.scale, self.bias = normalization(torch.tensor(mean, device=device), torch.tensor(std, device=device))
        self.fill = fill_value(tuple(mean), device)  # cutout's: the training mean, as albumentations fills it

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, index: Tensor) -> Batch:
        """Images ``index`` normalised, unaugmented, and their labels."""
        return normalize(self.images.index_select(0, index), self.scale, self.bias), self.labels.index_select(0, index)


class TrainBatches:
    """One epoch of augmented batches, ``EpochSeededSampler``'s order sharded by rank; an image's augmentation
    depends on the seed, the epoch and the image only, not on the batch size or process layout."""

    def __init__(
        self,
        split: DeviceSplit,
        batch_size: int,
        augmentation: Augmentation,
        seed: int,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.augmentation = augmentation
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochSeededSampler(len(split), seed, epoch)  # Lightning calls its set_epoch

    def __len__(self) -> int:
        return len(self.split) // self.world_size // self.batch_size  # a ragged last batch is dropped

    def __iter__(self) -> Iterator[Batch]:
        sampler = self.sampler
        order = sampler.permutation()[self.rank :: self.world_size][: len(self) * self.batch_size]
        generator = torch.Generator().manual_seed(epoch_seed(sampler.seed, sampler.epoch, TENSOR_AUGMENTATION))
        draws = draw(self.augmentation, len(self.split), self.split.images.shape[1], generator)
        draws = draws.rows(order)
        # one copy of the epoch's order and draws to the device; the batches below only index them
        device = self.split.device
        order, draws = to_device(order, device), draws.to(device)
        side = epoch_side(self.augmentation, sampler.epoch, self.split.images.shape[1])
        for start in range(0, len(order), self.batch_size):
            rows = slice(start, start + self.batch_size)
            index = order[rows]
            images = augment(
                self.split.images.index_select(0, index), draws.rows(rows), self.augmentation, self.split.fill
            )
            yield (
                shrink(normalize(images, self.split.scale, self.split.bias), side),
                self.split.labels.index_select(0, index),
            )


def epoch_side(augmentation: Augmentation, epoch: int, full: int) -> int:
    """The side that ``epoch``'s training images have: ``augmentation.epoch_sides``' entry, or ``full`` past the list."""
    sides = augmentation.epoch_sides
    return sides[epoch] if epoch < len(sides) else full


def shrink(images: Tensor, side: int) -> Tensor:
    """N x C x H x W images resized to ``side`` x ``side`` (bilinear, antialiased, so no aliasing when shrinking); unchanged at their own side."""
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


class EvalBatches:
    """Validation or test batches from a ``DeviceSplit``, in order, unaugmented; process ``rank`` takes every ``world_size``-th image."""

    def __init__(self, split: DeviceSplit, batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.split = split
        self.batch_size = batch_size
        self.index = torch.arange(rank, len(split), world_size, device=split.device)

    def __len__(self) -> int:
        return -(-len(self.index) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, len(self.index), self.batch_size):
            yield self.split.batch(self.index[start : start + self.batch_size])


class DeviceImages(Dataset):
    """A ``DeviceSplit`` read a batch at a time (``__getitems__``) for ``predict``, whose writer names images by index."""

    def __init__(self, split: DeviceSplit, names: Sequence[str]) -> None:
        self.split = split
        self.names = names

    def __len__(self) -> int:
        return len(self.split)

    def name(self, index: int) -> str:
        return str(self.names[index])

    def __getitem__(self, index: int) -> Batch:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]

    def __getitems__(self, indices: list[int]) -> Batch:
        return self.split.batch(torch.tensor(indices, device=self.split.device))


def already_batched(batch: Batch) -> Batch:
    """The DataLoader's ``collate_fn`` for ``DeviceImages``, whose ``__getitems__`` returns a whole batch."""
    return batch
