"""What the augmentation does to a fixed set of training images: a few draws of each, as uint8 pixels.

The draws come from the pipeline the run trains with (``data.pipeline``), from a seed of their own,
so the preview shows the setting and takes nothing from the training's random streams.
"""

from __future__ import annotations

import numpy as np
import torch

from cifar_lightning.data import tensor_augment
from cifar_lightning.data.augment import Augmentation, augmentation_transform, seed_augmentation

PREVIEW_SEED = 0  # the preview's own stream: the same pictures for the same setting, run after run


def one_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of the first image of each class, then the next of each, until ``count``."""
    order = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    picked = [int(idx[i]) for i in range(max(map(len, order))) for idx in order if i < len(idx)]
    return np.array(picked[:count], dtype=np.int64)


def augmented_draws(
    images: np.ndarray, aug: Augmentation, mean: tuple[float, ...], pipeline: str, draws: int, seed: int = PREVIEW_SEED
) -> np.ndarray:
    """N x ``draws`` x H x W x 3 uint8: each of the N images as the training augmentation draws it."""
    n, size = len(images), images.shape[1]
    if pipeline == "device":
        repeated = torch.from_numpy(np.ascontiguousarray(np.repeat(images, draws, axis=0)))
        parameters = tensor_augment.draw(aug, n * draws, size, torch.Generator().manual_seed(seed))
        out = tensor_augment.augment(repeated, parameters, aug, tensor_augment.fill_value(mean, repeated.device))
        return out.numpy().reshape(n, draws, *images.shape[1:])
    transform = augmentation_transform(aug, mean)
    seed_augmentation(transform, seed)
    return np.stack([np.stack([transform(image=image)["image"] for _ in range(draws)]) for image in images])
