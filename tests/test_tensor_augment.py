"""The device pipeline's tensor augmentation is the albumentations pipeline's: the same pixels for the same
parameters, the same frequencies over many draws, and batches that depend on the seed, the epoch and the image alone."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.geometric import functional as geometric
from scipy.stats import chisquare

from cifar_lightning.data import Augmentation
from cifar_lightning.data.device_batches import DeviceSplit, TrainBatches
from cifar_lightning.data.tensor_augment import augment, cutout, draw, fill_value, scale_and_rotate

SIDE = 32
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (256, SIDE, SIDE, 3), dtype=np.uint8)


def draws_for(aug: Augmentation, count: int, seed: int = 0):
    return draw(aug, count, SIDE, torch.Generator().manual_seed(seed))


def test_the_shift_equals_opencvs_warp_with_the_reflect_101_border_bit_for_bit(images):
    # shifts up to 31 px: far past the border, where reflect-101 folds more than once on the way
    aug = Augmentation(hflip_p=0.5, affine_p=0.9, shift_px=31, scale=0, rotate=0, cutout_p=0)
    draws = draws_for(aug, len(images))
    out = augment(torch.from_numpy(images), draws, aug, fill_value(MEAN, torch.device("cpu"))).numpy()
    for i, image in enumerate(images):
        mirrored = cv2.flip(image, 1) if draws.flip[i] else image
        matrix = np.float32([[1, 0, int(draws.shift_x[i])], [0, 1, int(draws.shift_y[i])]])
        expected = cv2.warpAffine(
            mirrored, matrix, (SIDE, SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        assert np.array_equal(out[i], expected), (
            f"image {i}: flip {bool(draws.flip[i])}, shift {int(draws.shift_x[i])}, {int(draws.shift_y[i])}"
        )
    assert draws.flip.any() and (draws.shift_x.abs() > SIDE // 2).any()  # the draws reached the cases that matter


def test_the_cutout_equals_coarse_dropouts_hole(images):
    aug = Augmentation(hflip_p=0, affine_p=0, cutout_p=1.0, cutout_size=16)
    draws = draws_for(aug, len(images))
    fill = fill_value(MEAN, torch.device("cpu"))
    out = augment(torch.from_numpy(images), draws, aug, fill).numpy()  # the hole as part of the one gather
    after_warp = cutout(torch.from_numpy(images), draws, 16, fill).numpy()  # the hole after a scale/rotate warp
    dropout = A.CoarseDropout(
        num_holes_range=(1, 1),
        hole_height_range=(16, 16),
        hole_width_range=(16, 16),
        fill=tuple(255.0 * m for m in MEAN),
        p=1.0,
    )  # as augment.train_transform builds it
    for i, image in enumerate(images):
        top, left = int(draws.hole_top[i]), int(draws.hole_left[i])
        expected = dropout.apply(image, holes=np.array([[left, top, left + 16, top + 16]]), seed=0)
        assert np.array_equal(out[i], expected) and np.array_equal(after_warp[i], expected), (
            f"image {i}: hole at {top}, {left}"
        )


def test_scale_and_rotate_match_albumentations_affine_to_rounding(images):
    aug = Augmentation(hflip_p=0, affine_p=1.0, shift_px=3, scale=0.1, rotate=15, cutout_p=0)
    draws = draws_for(aug, len(images))
    out = scale_and_rotate(torch.from_numpy(images), draws).numpy().astype(int)
    for i, image in enumerate(images):
        matrix = geometric.create_affine_transformation_matrix(
            {"x": int(draws.shift_x[i]), "y": int(draws.shift_y[i])},
            {"x": 0, "y": 0},
            {"x": float(draws.scale[i]), "y": float(draws.scale[i])},
            float(draws.angle[i]),
            geometric.center((SIDE, SIDE)),
        )
        expected = cv2.warpAffine(
            image, matrix[:2], (SIDE, SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        difference = np.abs(out[i] - expected.astype(int))
        assert difference.max() <= 1 and difference.mean() < 0.01, f"image {i}: off by up to {difference.max()}"


COUNT = 20_000


def frequencies_fit(observed: np.ndarray, expected_share: np.ndarray) -> float:
    """Chi-square p-value of observed counts against expected shares."""
    return chisquare(observed, expected_share / expected_share.sum() * observed.sum()).pvalue


def test_flip_shift_and_hole_frequencies_match_the_configured_probabilities():
    aug = Augmentation(hflip_p=0.5, affine_p=0.7, shift_px=3, scale=0, rotate=0, cutout_p=0.3, cutout_size=12)
    draws = draws_for(aug, COUNT, seed=1)
    flips = draws.flip.sum().item()
    assert frequencies_fit(np.array([flips, COUNT - flips]), np.array([aug.hflip_p, 1 - aug.hflip_p])) > 1e-3
    holes = draws.hole.sum().item()
    assert frequencies_fit(np.array([holes, COUNT - holes]), np.array([aug.cutout_p, 1 - aug.cutout_p])) > 1e-3
    # each axis: 0 when the affine step does not run, else uniform over -3..3
    values = np.arange(-3, 4)
    shares = np.full(7, aug.affine_p / 7) + np.where(values == 0, 1 - aug.affine_p, 0)
    for axis in (draws.shift_x, draws.shift_y):
        counts = np.array([(axis == v).sum().item() for v in values])
        assert counts.sum() == COUNT and frequencies_fit(counts, shares) > 1e-3, counts
    # the hole's corner is uniform over the 21 positions that keep a 12-px hole inside the image
    corners = np.bincount(draws.hole_top[draws.hole].numpy(), minlength=SIDE - 12 + 1)
    assert len(corners) == 21 and frequencies_fit(corners, np.ones(21)) > 1e-3
    # the test can fail: a wrong probability is far outside the spread
    assert frequencies_fit(np.array([flips, COUNT - flips]), np.array([0.45, 0.55])) < 1e-6


def test_flip_shift_and_hole_decisions_are_independent():
    aug = Augmentation(hflip_p=0.5, affine_p=0.5, shift_px=2, scale=0, rotate=0, cutout_p=0.5, cutout_size=8)
    draws = draws_for(aug, COUNT, seed=2)
    flip, hole, shifted = draws.flip.numpy(), draws.hole.numpy(), (draws.shift_x != 0).numpy()
    for a, b in ((flip, hole), (flip, shifted), (hole, shifted)):
        table = np.array([[(a & b).sum(), (a & ~b).sum()], [(~a & b).sum(), (~a & ~b).sum()]]).ravel()
        expected = np.outer([a.mean(), 1 - a.mean()], [b.mean(), 1 - b.mean()]).ravel()
        assert frequencies_fit(table, expected) > 1e-3


def split_of(count: int = 96) -> DeviceSplit:
    images = np.random.default_rng(3).integers(0, 256, (count, SIDE, SIDE, 3), dtype=np.uint8)
    return DeviceSplit(images, np.arange(count) % 10, MEAN, STD, torch.device("cpu"))


SEED_AUG = Augmentation()  # the seed's flip, shift/scale/rotate and cutout


def epoch(
    split: DeviceSplit, epoch: int, batch_size: int = 8, rank: int = 0, world_size: int = 1, seed: int = 7
) -> list:
    batches = TrainBatches(split, batch_size, SEED_AUG, seed, rank=rank, world_size=world_size)
    batches.sampler.set_epoch(epoch)  # as Lightning does
    return list(batches)


def test_an_epoch_depends_on_seed_and_epoch_alone_and_epochs_differ():
    split = split_of()
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch(split, 2), epoch(split, 2)))
    assert not torch.equal(epoch(split, 1)[0][0], epoch(split, 2)[0][0])
    assert not torch.equal(epoch(split, 1, seed=7)[0][0], epoch(split, 1, seed=8)[0][0])
    images, labels = epoch(split, 0)[0]
    assert images.shape == (8, 3, SIDE, SIDE) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_ddp_processes_take_disjoint_shards_and_an_images_draw_does_not_depend_on_the_world_size():
    count = 96
    images = np.random.default_rng(4).integers(0, 256, (count, SIDE, SIDE, 3), dtype=np.uint8)
    split = DeviceSplit(images, np.arange(count), MEAN, STD, torch.device("cpu"))  # each label is the image's number
    alone = {int(label): image for images, labels in epoch(split, 3) for label, image in zip(labels, images)}
    shards = [
        {
            int(label): image
            for images, labels in epoch(split, 3, rank=r, world_size=2)
            for label, image in zip(labels, images)
        }
        for r in (0, 1)
    ]
    assert not set(shards[0]) & set(shards[1]) and len(shards[0]) == len(shards[1]) == count // 2
    assert len(TrainBatches(split, 8, SEED_AUG, 7, world_size=2)) == count // 2 // 8
    for shard in shards:  # each image augmented as it is in a single process
        assert all(torch.equal(image, alone[number]) for number, image in shard.items())
