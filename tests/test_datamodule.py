"""The data module on a tiny synthetic image folder and on the real JPEG archive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything

from cifar_lightning.data import Augmentation, ImageDataModule
from cifar_lightning.data.augment import eval_transform

NO_AUGMENTATION = Augmentation(hflip_p=0, affine_p=0, cutout_p=0)
# the albumentations pipeline in the main process and in loader workers, and the device pipeline (no workers)
PIPELINES = [("albumentations", 0), ("albumentations", 2), ("device", 0)]


def fitted(dm: ImageDataModule) -> ImageDataModule:
    dm.prepare_data()
    dm.setup("fit")
    return dm


def first_batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


# ---------------------------------------------------------------- synthetic folder


def test_image_folder_split_sizes_shapes_and_labels(image_folder):
    dm = fitted(ImageDataModule(str(image_folder), download=False, val_size=30, batch_size=8, num_workers=0))
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 30, 20)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        images, labels = first_batch(loader)
        assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)
        assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() <= 9


def test_image_folder_directly_in_data_dir(tmp_path):
    from conftest import make_image_folder

    make_image_folder(tmp_path, train_per_class=2, test_per_class=1, size=40)  # 40 px: resized on decode
    dm = fitted(ImageDataModule(str(tmp_path), download=False, val_size=0, num_workers=0))
    assert dm.train_set.images.shape == (20, 32, 32, 3) and dm.train_set.images.dtype == np.uint8


def test_split_is_seeded_and_disjoint(image_folder):
    def split(seed):
        dm = fitted(ImageDataModule(str(image_folder), download=False, val_size=30, split_seed=seed, num_workers=0))
        return dm.val_set.images.reshape(30, -1), dm.train_set.images.reshape(30, -1)

    val_a, train_a = split(0)
    val_b, _ = split(0)
    val_c, _ = split(1)
    assert np.array_equal(val_a, val_b)
    assert not np.array_equal(val_a, val_c)
    assert not {row.tobytes() for row in val_a} & {row.tobytes() for row in train_a}


def test_normalization_statistics_come_from_the_training_split(image_folder):
    from cifar_lightning.data.datamodule import channel_stats

    dm = fitted(ImageDataModule(str(image_folder), download=False, val_size=30, num_workers=0))
    pixels = dm.train_set.images.reshape(-1, 3) / 255.0
    assert np.allclose(dm.mean, pixels.mean(0)) and np.allclose(dm.std, pixels.std(0))
    assert channel_stats(dm.val_set.images) != (dm.mean, dm.std)


def test_the_statistics_are_cached_with_the_data_and_a_bad_entry_is_computed_again(image_folder, tmp_path, monkeypatch):
    import json

    from cifar_lightning.data import datamodule

    first = fitted(
        ImageDataModule(str(image_folder), download=False, cache_dir=str(tmp_path / "c"), val_size=30, num_workers=0)
    )
    (stats,) = (tmp_path / "c").glob("*.stats.json")
    computed = []
    real = datamodule.channel_stats
    monkeypatch.setattr(datamodule, "channel_stats", lambda images: computed.append(1) or real(images))
    again = fitted(
        ImageDataModule(str(image_folder), download=False, cache_dir=str(tmp_path / "c"), val_size=30, num_workers=0)
    )
    assert computed == [] and (again.mean, again.std) == (first.mean, first.std)  # read, the same floats
    other = fitted(
        ImageDataModule(
            str(image_folder), download=False, cache_dir=str(tmp_path / "c"), val_size=30, split_seed=1, num_workers=0
        )
    )
    assert computed == [1] and other.mean != first.mean  # another split, its own entry
    stored = json.loads(stats.read_text())
    stored["splits"]["30:0"]["std"] = [0.0, float("nan"), 1.0]
    stats.write_text(json.dumps(stored))
    edited = fitted(
        ImageDataModule(str(image_folder), download=False, cache_dir=str(tmp_path / "c"), val_size=30, num_workers=0)
    )
    assert computed == [1, 1] and (edited.mean, edited.std) == (first.mean, first.std)


# ---------------------------------------------------------------- worker seeding


def identical_images(dm: ImageDataModule) -> ImageDataModule:
    """Make every training image the same, so any difference between samples is augmentation."""
    dm.train_set.images = np.repeat(dm.train_set.images[:1], len(dm.train_set.images), axis=0)
    return dm


def test_workers_and_epochs_draw_different_augmentations(image_folder):
    seed_everything(3)
    dm = identical_images(
        fitted(
            ImageDataModule(
                str(image_folder), download=False, val_size=30, batch_size=8, num_workers=2, pipeline="albumentations"
            )
        )
    )
    loader = dm.train_dataloader()
    epoch1 = list(loader)
    loader.sampler.set_epoch(1)  # as Lightning does before each epoch
    epoch2 = list(loader)
    # batch 0 comes from worker 0 and batch 1 from worker 1: without per-worker seeding they are equal
    assert not torch.equal(epoch1[0][0], epoch1[1][0])
    assert not torch.equal(epoch1[0][0], epoch2[0][0])


@pytest.mark.parametrize(("pipeline", "num_workers"), PIPELINES)
def test_fixed_seed_reproduces_augmentation(image_folder, pipeline, num_workers):
    def two_epochs():
        seed_everything(11)
        dm = fitted(
            ImageDataModule(
                str(image_folder), download=False, val_size=30, batch_size=8, num_workers=num_workers, pipeline=pipeline
            )
        )
        loader = dm.train_dataloader()
        epochs = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            epochs.append(torch.cat([images for images, _ in loader]))
        return epochs

    first, second = two_epochs(), two_epochs()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize(("pipeline", "num_workers"), PIPELINES)
def test_an_epoch_depends_on_seed_and_epoch_alone(image_folder, pipeline, num_workers):
    """What exact resume rests on: epoch 2 straight away equals epoch 2 after epochs 0 and 1."""

    def epochs(which):
        seed_everything(5)
        dm = fitted(
            ImageDataModule(
                str(image_folder), download=False, val_size=30, batch_size=8, num_workers=num_workers, pipeline=pipeline
            )
        )
        loader = dm.train_dataloader()
        out = {}
        for epoch in which:
            loader.sampler.set_epoch(epoch)
            out[epoch] = [(images, labels) for images, labels in loader]
        return out

    straight, after = epochs([2])[2], epochs([0, 1, 2])[2]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(straight, after))


# ---------------------------------------------------------------- the real archive


@pytest.fixture(scope="module")
def real_dm(real_data_dir, real_archive) -> ImageDataModule:
    from harness import SUBSET_VAL_SIZE

    return fitted(
        ImageDataModule(
            str(real_data_dir),
            archive=str(real_archive),
            num_workers=0,
            batch_size=64,
            val_size=SUBSET_VAL_SIZE,
            pipeline="albumentations",
        )
    )


@pytest.mark.slow
def test_real_archive_split_sizes_shapes_dtypes_labels(full_data_dir, full_copy):
    full = fitted(ImageDataModule(str(full_data_dir), archive=str(full_copy), num_workers=0, batch_size=64))
    assert (len(full.train_set), len(full.val_set), len(full.test_set)) == (45_000, 5_000, 10_000)
    for dataset in (full.train_set, full.val_set, full.test_set):
        assert dataset.images.dtype == np.uint8 and dataset.images.shape[1:] == (32, 32, 3)
        assert set(np.unique(dataset.labels)) == set(range(10))
    assert np.bincount(full.test_set.labels).tolist() == [1000] * 10
    # CIFAR-10's training mean is about (0.49, 0.48, 0.45): the decode and statistics are sane
    assert np.allclose(full.mean, (0.49, 0.48, 0.45), atol=0.02)
    images, labels = first_batch(full.train_dataloader())
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.float32 and labels.dtype == torch.int64


def test_real_train_augmentation_changes_pixels_but_val_and_test_do_not(real_dm):
    plain = eval_transform(real_dm.mean, real_dm.std)
    train = real_dm.train_set
    changed = sum(not torch.equal(train[i][0], plain(image=train.images[i])["image"]) for i in range(200))
    # flip, affine and cutout each run with p=0.5: all three skip on 1/8 of images
    assert changed > 150
    for dataset, loader in ((real_dm.val_set, real_dm.val_dataloader()), (real_dm.test_set, real_dm.test_dataloader())):
        images, _ = first_batch(loader)
        expected = torch.stack([plain(image=dataset.images[i])["image"] for i in range(len(images))])
        assert torch.equal(images, expected)
        assert torch.equal(first_batch(loader)[0], images)


def test_the_device_pipeline_evaluates_the_same_images_unaugmented(real_data_dir, real_archive):
    from harness import SUBSET_VAL_SIZE

    dm = fitted(
        ImageDataModule(
            str(real_data_dir), archive=str(real_archive), batch_size=64, val_size=SUBSET_VAL_SIZE, pipeline="device"
        )
    )
    plain = eval_transform(dm.mean, dm.std)
    for dataset, loader in ((dm.val_set, dm.val_dataloader()), (dm.test_set, dm.test_dataloader())):
        images, labels = first_batch(loader)
        expected = torch.stack([plain(image=dataset.images[i])["image"] for i in range(len(images))])
        # the same normalisation, computed in another order: equal to float rounding
        assert torch.allclose(images, expected, atol=1e-5) and labels.tolist() == dataset.labels[: len(images)].tolist()
        assert images.is_contiguous(
            memory_format=torch.channels_last
        )  # the layout the recipes train in, without a copy
    assert len(dm.test_dataloader()) == -(-len(dm.test_set) // dm.eval_batch_size)


def test_val_size_larger_than_the_training_set(image_folder):
    from cifar_lightning.errors import DataError

    dm = ImageDataModule(str(image_folder), download=False, val_size=60, num_workers=0)
    dm.prepare_data()
    with pytest.raises(DataError, match="val_size=60 leaves no training images"):
        dm.setup("fit")


def test_val_size_zero_trains_on_every_image_without_validation(image_folder):
    dm = ImageDataModule(str(image_folder), download=False, val_size=0, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 60 and dm.val_dataloader() == []  # 6 images of each of 10 classes


def column_coded_offsets(shift_px: int, draws: int) -> list[int]:
    """Horizontal offsets Affine applies, read off an image whose pixel value is its column."""
    from cifar_lightning.data.augment import seed_augmentation, train_transform

    aug = Augmentation(hflip_p=0, affine_p=1.0, shift_px=shift_px, scale=0.0, rotate=0.0, cutout_p=0)
    transform = train_transform(aug, (0.0,) * 3, (1 / 255,) * 3)  # Normalize then leaves 0-255 values
    seed_augmentation(transform, 0)
    image = np.tile((np.arange(32) * 4).astype(np.uint8)[None, :, None], (32, 1, 3))
    offsets = []
    for _ in range(draws):
        out = transform(image=image)["image"][0].numpy()
        offsets.append(int(round((out[16, 16] - image[16, 16, 0]) / -4)))  # content moves right: value drops
    return offsets


def test_shifts_are_whole_pixels_over_the_stated_range():
    offsets = column_coded_offsets(2, 2000)
    counts = {o: offsets.count(o) for o in set(offsets)}
    assert set(counts) == {-2, -1, 0, 1, 2}, counts
    assert all(300 < c < 500 for c in counts.values()), counts  # uniform: 400 each


def first_decisions(reseed, images: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Flip and cutout decisions on the first image after each of ``images`` reseeds (an epoch's start)."""
    from cifar_lightning.data.augment import train_transform

    aug = Augmentation(hflip_p=0.5, affine_p=0, cutout_p=0.5, cutout_size=8)
    transform = train_transform(aug, (0.0,) * 3, (1 / 255,) * 3)
    image = np.tile((np.arange(32) * 4 + 1).astype(np.uint8)[None, :, None], (32, 1, 3))
    flips, cuts = [], []
    for seed in range(images):
        reseed(transform, seed)
        out = transform(image=image)["image"][0].numpy()
        flips.append(out[0, 0] > out[0, 31] or out[31, 0] > out[31, 31])
        cuts.append(bool((out == 0).any()))  # the hole is filled with the mean, 0 here
    return np.array(flips), np.array(cuts)


def test_flip_and_cutout_decisions_are_independent():
    from cifar_lightning.data.augment import seed_augmentation

    flips, cuts = first_decisions(seed_augmentation)
    assert 100 < flips.sum() < 200 and 100 < cuts.sum() < 200
    agreement = (flips == cuts).mean()
    assert 0.4 < agreement < 0.6, agreement  # chance gives 0.5 (sd 0.03)
    # what Compose.set_random_seed alone does: one seed for every transform locks them together
    flips, cuts = first_decisions(lambda transform, seed: transform.set_random_seed(seed))
    assert (flips == cuts).mean() == 1.0


def test_ddp_processes_augment_differently_without_loader_workers():
    from cifar_lightning.data.sampling import EpochSeededSampler

    seeds = {}
    for rank in (0, 1):
        calls = []
        sampler = EpochSeededSampler(8, seed=42, epoch=3, reseed_in_process=calls.append, rank=rank)
        order = list(sampler)
        seeds[rank] = (calls, order)
    # the same epoch order for both (DistributedSampler splits it), different augmentation streams
    assert seeds[0][1] == seeds[1][1] and seeds[0][0] != seeds[1][0]
