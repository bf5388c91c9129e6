"""The seed's augmentation in albumentations 2.0.8, its checks, the seeding it needs, and the dataset it runs on."""

from __future__ import annotations

import copy
import os
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from lightning.fabric.utilities.seed import pl_worker_init_function
from pydantic import ValidationError
from torch.utils.data import Dataset

from cifar_lightning.data.sources import IMAGE_SIZE
from cifar_lightning.errors import ConfigError, DataError

MIN_SIDE = 16  # the smallest side a training epoch may shrink to (Augmentation.epoch_sides)


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation; each ``*_p`` is the probability that the step runs. Pixel values are for
    32-pixel images and scale with ``data.image_size`` (``at``). Checked when built (the CLI builds it at parse)."""

    hflip_p: float = 0.5
    affine_p: float = 0.5
    # whole pixels each way, drawn uniformly from -shift_px..shift_px on each axis. A fraction of
    # the side (albumentations' translate_percent) is truncated toward zero: 0.0625 x 32 gave
    # only -1, 0 and +1, so a fraction would not mean what it says.
    shift_px: int = 3
    scale: float = 0.1  # relative zoom, each way (0.9x to 1.1x)
    rotate: float = 15.0  # degrees, each way
    cutout_p: float = 0.5
    cutout_size: int = 16  # pixels; one square hole filled with the training mean
    # the side, in pixels, that each of the first epochs trains at: the augmented image shrunk
    # (bilinear, antialiased) before the network sees it; epochs past the list train at full size.
    # A 24-pixel step of CompactNet runs 2.2 times as many images a second as a 32-pixel one in a
    # plain loop on the 2-core CPU, so early epochs buy more updates a minute. At least 16 pixels:
    # the whitened stem and three halvings leave a 1-pixel map at 16. The device pipeline only.
    epoch_sides: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        ranges = {
            "hflip_p": (self.hflip_p, 0, 1, "a probability in [0, 1]"),
            "affine_p": (self.affine_p, 0, 1, "a probability in [0, 1]"),
            "cutout_p": (self.cutout_p, 0, 1, "a probability in [0, 1]"),
            "shift_px": (self.shift_px, 0, IMAGE_SIZE - 1, f"whole pixels at 32 in [0, {IMAGE_SIZE - 1}]"),
            "scale": (self.scale, 0, 0.99, "a relative zoom in [0, 0.99] (0.1: 0.9x to 1.1x)"),
            "rotate": (self.rotate, 0, 180, "degrees in [0, 180]"),
            "cutout_size": (
                self.cutout_size,
                0,
                IMAGE_SIZE,
                f"pixels at 32 in [0, {IMAGE_SIZE}], the image side at most",
            ),
        }
        for key, (value, low, high, meaning) in ranges.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"data.augmentation.{key} = {value!r} is out of range: it must be {meaning}")
        for side in self.epoch_sides:
            if isinstance(side, bool) or not isinstance(side, int) or not MIN_SIDE <= side <= IMAGE_SIZE:
                raise ConfigError(
                    f"data.augmentation.epoch_sides holds {side!r}: each must be a whole number of pixels in [{MIN_SIDE}, {IMAGE_SIZE}]"
                )
        if not float(self.shift_px).is_integer():
            raise ConfigError(f"data.augmentation.shift_px = {self.shift_px!r} must be a whole number of pixels")
        train_transform(self, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # placeholder statistics

    def at(self, size: int) -> Augmentation:
        """This augmentation for images of ``size`` pixels: its pixel values, checked at 32, scaled to ``size``."""
        scaled = copy.copy(self)
        for key, value in (("shift_px", self.shift_px), ("cutout_size", self.cutout_size)):
            object.__setattr__(scaled, key, round(value * size / IMAGE_SIZE))  # frozen: set once, here
        object.__setattr__(scaled, "epoch_sides", tuple(round(side * size / IMAGE_SIZE) for side in self.epoch_sides))
        return scaled


def _normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> list[A.BasicTransform]:
    # ToTensorV2 does not scale, so Normalize (on 0-255 input) must come first.
    return [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]


def train_transform(aug: Augmentation, mean: tuple[float, ...], std: tuple[float, ...]) -> A.Compose:
    """Flip, shift/scale/rotate, cutout, normalize (``mean``/``std`` in [0, 1]); albumentations' refusal is one line."""
    return augmentation_transform(aug, mean, _normalize(mean, std))


def augmentation_transform(
    aug: Augmentation, mean: tuple[float, ...], after: list[A.BasicTransform] | None = None
) -> A.Compose:
    """Flip, shift/scale/rotate and cutout of uint8 images (the training pipeline before ``after``, its normalisation)."""
    steps: list[A.BasicTransform] = []
    try:
        if aug.hflip_p > 0:
            steps.append(A.HorizontalFlip(p=aug.hflip_p))
        if aug.affine_p > 0:
            steps.append(
                A.Affine(
                    translate_px=(-int(aug.shift_px), int(aug.shift_px)),
                    scale=(1 - aug.scale, 1 + aug.scale),
                    rotate=(-aug.rotate, aug.rotate),
                    # the seed used ShiftScaleRotate, whose border default was reflect-101 (Affine's is black)
                    border_mode=cv2.BORDER_REFLECT_101,
                    p=aug.affine_p,
                )
            )
        if aug.cutout_p > 0 and aug.cutout_size > 0:
            size = (aug.cutout_size, aug.cutout_size)
            steps.append(
                A.CoarseDropout(
                    num_holes_range=(1, 1),
                    hole_height_range=size,
                    hole_width_range=size,
                    fill=tuple(255.0 * m for m in mean),  # before Normalize, so in 0-255 units
                    p=aug.cutout_p,
                )
            )
        # strict: a misspelled or pre-2.0 argument name is an error, not a silently ignored warning
        return A.Compose(steps + list(after or []), strict=True)
    except (ValidationError, ValueError) as err:
        first = str(err).strip().splitlines()
        raise ConfigError(
            f"albumentations refused data.augmentation ({' '.join(first[:3])}): check its values"
        ) from None


def eval_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> A.Compose:
    return A.Compose(_normalize(mean, std), strict=True)


def seed_augmentation(transform: A.Compose, seed: int) -> None:
    """Each transform its own stream from ``seed``: ``Compose.set_random_seed`` gives all the same seed, so flip,
    affine and cutout would fire together or not at all."""
    children = np.random.SeedSequence(seed).spawn(len(transform.transforms) + 1)
    transform.set_random_seed(int(children[0].generate_state(1)[0]))  # the Compose's own draws
    for step, child in zip(transform.transforms, children[1:]):
        step.set_random_seed(int(child.generate_state(1)[0]))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Lightning's per-worker seeding, also of albumentations (else every worker
    repeats one sequence, albumentations #2473). The worker leaves the terminal's process group, so a group kill
    (Ctrl-C, ``timeout``) reaches only the main process, which saves and stops its workers."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, previous)
    pl_worker_init_function(worker_id)
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if isinstance(transform, A.Compose):
        seed_augmentation(transform, random.getrandbits(32))  # random: just seeded by Lightning


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
