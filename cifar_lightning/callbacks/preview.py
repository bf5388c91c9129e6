"""The augmentation preview: fixed training images beside draws of the run's pipeline (from a seed of their own),
logged when a fit starts and written by ``cifar-lightning preview``."""

from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

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


def preview_figure(datamodule, images: int, draws: int):
    """The augmentation preview of a set-up data module: one row an image, the image then its draws."""
    import matplotlib

    matplotlib.use("Agg")  # files and TensorBoard only, no display
    import matplotlib.pyplot as plt

    picked = one_per_class(datamodule.train_set.labels, images)
    originals = datamodule.train_set.images[picked]
    drawn = augmented_draws(originals, datamodule.augmentation, datamodule.mean, datamodule.pipeline, draws)
    names = [datamodule.classes[int(label)] for label in datamodule.train_set.labels[picked]]
    aug = datamodule.augmentation
    rows, columns = len(originals), 1 + draws
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.25), dpi=100, squeeze=False)
    for row, (original, drawn_row, name) in enumerate(zip(originals, drawn, names)):
        for column, image in enumerate([original, *drawn_row]):
            ax = axes[row, column]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("image" if column == 0 else f"draw {column}", fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=7)
    fig.suptitle(
        f"data.augmentation ({datamodule.pipeline} pipeline): flip {aug.hflip_p}, affine {aug.affine_p} "
        f"(shift {aug.shift_px} px, scale {aug.scale}, rotate {aug.rotate}), cutout {aug.cutout_p} ({aug.cutout_size} px)",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


class AugmentationPreview(Callback):
    """At the start of a new fit, to every logger: the augmentation preview.

    Args:
        images: how many training images the grid shows.
        draws: how many augmented versions of each; 0 leaves the preview out.
    """

    def __init__(self, images: int = 8, draws: int = 5) -> None:
        self.images = images
        self.draws = draws

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from cifar_lightning.callbacks.summaries import log_figures

        log_dir = trainer.log_dir  # every rank: a broadcast
        if not trainer.is_global_zero or min(self.draws, self.images) <= 0 or trainer.global_step > 0:
            return  # a resumed run showed it when it started
        if trainer.loggers:
            figure = preview_figure(trainer.datamodule, self.images, self.draws)
            log_figures(trainer, {"train/augmentation": figure}, log_dir)
