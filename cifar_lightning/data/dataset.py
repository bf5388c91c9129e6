"""A map-style dataset over decoded uint8 images."""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from cifar_lightning.errors import DataError


class ImageArrayDataset(Dataset):
    """Images (N x H x W x 3 uint8) and labels through an albumentations pipeline; ``names`` (paths) or indices."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: A.Compose, names: Sequence[str] | None = None
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform
        self.names = names

    def __len__(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        return str(self.names[index]) if self.names is not None else f"item {index}"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            image = self.transform(image=self.images[index])["image"]
        except Exception as err:  # noqa: BLE001 - any failure, named by the item that caused it
            raise DataError(
                f"the image {self.name(index)} failed in the data pipeline ({type(err).__name__}: {' '.join(str(err).split())}): "
                "fix or remove that image, or the augmentation setting that fails on it"
            ) from err
        return image, int(self.labels[index])
