"""The seed's augmentation in albumentations 2.0.8, plus the worker seeding it needs."""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass

import albumentations as A
import cv2
import torch
from albumentations.pytorch import ToTensorV2
from lightning.fabric.utilities.seed import pl_worker_init_function


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation; each ``*_p`` is the probability that the step runs."""

    hflip_p: float = 0.5
    affine_p: float = 0.5
    shift: float = 0.1  # fraction of the image side, each way
    scale: float = 0.1  # relative zoom, each way (0.9x to 1.1x)
    rotate: float = 15.0  # degrees, each way
    cutout_p: float = 0.5
    cutout_size: int = 16  # pixels; one square hole filled with the training mean


def _normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> list[A.BasicTransform]:
    # ToTensorV2 does not scale, so Normalize (on 0-255 input) must come first.
    return [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]


def train_transform(aug: Augmentation, mean: tuple[float, ...], std: tuple[float, ...]) -> A.Compose:
    """Flip, shift/scale/rotate, cutout, normalize. ``mean``/``std`` are in [0, 1] per channel."""
    steps: list[A.BasicTransform] = []
    if aug.hflip_p > 0:
        steps.append(A.HorizontalFlip(p=aug.hflip_p))
    if aug.affine_p > 0:
        steps.append(
            A.Affine(
                translate_percent=(-aug.shift, aug.shift),
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
    return A.Compose(steps + _normalize(mean, std), strict=True)


def eval_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> A.Compose:
    return A.Compose(_normalize(mean, std), strict=True)


def seed_augmentation(transform: A.Compose) -> None:
    """Seed an albumentations pipeline from the (already seeded) Python RNG.

    ``Compose`` keeps an RNG of its own that ``seed_everything`` does not reach; seeding it
    from the process RNG makes a fixed seed reproduce the augmentation stream.
    """
    transform.set_random_seed(random.getrandbits(32))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Lightning's per-worker seeding, extended to albumentations.

    Without the second step every worker starts from a copy of the same Compose RNG and
    applies the same augmentation sequence (albumentations #2473). Lightning's seeding
    mixes the loader's per-epoch base seed, the worker id and the global rank.

    Workers ignore SIGTERM: a ``kill`` of the whole process group (``timeout``, a batch
    scheduler) must stop the main process, which saves and shuts its workers down, rather
    than kill the workers under it and end in a "DataLoader worker killed" traceback.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pl_worker_init_function(worker_id)
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if isinstance(transform, A.Compose):
        seed_augmentation(transform)
