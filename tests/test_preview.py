"""The augmentation preview: real draws of the run's pipeline, at fit start and from ``cifar-lightning preview``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cifar_lightning.callbacks.preview import augmented_draws, one_per_class
from cifar_lightning.data.augment import Augmentation
from harness import CONFIG, data_args, main_in_process, one_line_error

MEAN = (0.49, 0.48, 0.45)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("pipeline", ["device", "albumentations"])
def test_draws_are_the_pipelines_own(pipeline, images):
    nothing = Augmentation(hflip_p=0.0, affine_p=0.0, cutout_p=0.0)
    unchanged = augmented_draws(images, nothing, MEAN, pipeline, draws=3)
    assert unchanged.shape == (4, 3, 32, 32, 3) and unchanged.dtype == np.uint8
    assert (unchanged == images[:, None]).all()
    mirrored = augmented_draws(images, Augmentation(hflip_p=1.0, affine_p=0.0, cutout_p=0.0), MEAN, pipeline, draws=2)
    assert (mirrored == images[:, None, :, ::-1]).all()
    seed_recipe = (
        Augmentation()
    )  # flip, shift and cutout at random: the draws of one image differ, and repeat run after run
    drawn = augmented_draws(images, seed_recipe, MEAN, pipeline, draws=5)
    assert len({d.tobytes() for d in drawn[0]}) > 1
    assert (drawn == augmented_draws(images, seed_recipe, MEAN, pipeline, draws=5)).all()


def test_one_of_each_class_first():
    labels = np.array([3, 3, 1, 0, 1, 0, 2])
    assert one_per_class(labels, 5).tolist() == [3, 2, 6, 0, 5]


def test_preview_writes_the_grid(tmp_path, capsys, real_data_dir, real_archive):
    result = main_in_process(
        [
            "preview",
            "--config",
            CONFIG,
            *data_args(real_data_dir, real_archive),
            "--out",
            tmp_path / "grid.png",
            "--images",
            "4",
            "--draws",
            "3",
        ],
        capsys,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    width, height = Image.open(tmp_path / "grid.png").size
    assert width > height / 2 and "4 training images, 3 draws each (device pipeline)" in result.stdout
    refused = main_in_process(["preview", "--config", CONFIG, "--draws", "0"], capsys)
    assert "--draws must be at least 1" in one_line_error(refused)
