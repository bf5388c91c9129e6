"""Grad-CAM maps of a committed checkpoint (through the grad-cam package), ``cifar-lightning explain``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import cifar_lightning
from cifar_lightning.explain import default_layer
from harness import REPO, main_in_process, one_line_error

CHECKPOINT = REPO / "results" / "fast" / "last.ckpt"


@pytest.fixture(scope="module")
def model():
    return cifar_lightning.load(CHECKPOINT)


@pytest.fixture(scope="module")
def test_images(real_images):
    """Two real test images of each class from the shipped subset."""
    return sorted((real_images / "test").glob("*/000[0-1].jpg"))


def test_a_map_per_image_finite_and_scaled_to_one(model, test_images):
    maps = model.activation_maps(test_images)
    assert maps.shape == (len(test_images), 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and np.allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-4)
    assert default_layer(model.network) == "features.3.4.0"  # CompactNet's last convolution, at 4x4
    # the default target is the predicted class; the same weights give the same maps
    predicted = [p.label for p in model.predict(test_images)]
    assert np.array_equal(model.activation_maps(test_images, classes=predicted), maps)
    # another layer, another map (a finer one, at 8x8)
    assert not np.allclose(model.activation_maps(test_images, layer="features.2.4.0"), maps)


def test_maps_change_when_the_weights_are_randomised(model, test_images):
    """The model-parameter randomisation test (Adebayo et al., 2018): a map that survives random weights explains nothing."""
    maps = model.activation_maps(test_images)
    random = copy.deepcopy(model)
    torch.manual_seed(0)
    for module in random.network.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    predicted = [p.label for p in model.predict(test_images)]
    shuffled = random.activation_maps(test_images, classes=predicted)
    correlation = np.nanmean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(maps, shuffled)])
    assert correlation < 0.5 and np.abs(maps - shuffled).mean() > 0.15  # measured: 0.10 and 0.29


def test_explain_writes_an_overlay_per_image(tmp_path, capsys, test_images):
    result = main_in_process(
        ["explain", "--ckpt_path", CHECKPOINT, *test_images[:3], "--out", tmp_path / "out", "--scale", "2"], capsys
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted((tmp_path / "out").glob("*-cam.png"))
    assert len(written) == 3 and all(Image.open(p).size == (128, 64) for p in written)  # the image beside its overlay
    assert result.stdout.count(" -> ") == 3 and "layer: features.3.4.0" in result.stdout


@pytest.mark.parametrize("case", ["no such layer", "not an image", "missing file", "empty folder"])
def test_explain_bad_input_is_one_line(case, tmp_path, capsys, test_images):
    args, named = [test_images[0]], ""
    if case == "no such layer":
        args, named = [test_images[0], "--layer", "features.99"], "has no layer"
    elif case == "not an image":
        (tmp_path / "notes.png").write_text("not pixels")
        args, named = [tmp_path / "notes.png"], "cannot read image"
    elif case == "missing file":
        args, named = [tmp_path / "nothing.png"], "does not exist"
    else:
        (tmp_path / "empty").mkdir()
        args, named = [tmp_path / "empty"], "no images in"
    result = main_in_process(["explain", "--ckpt_path", CHECKPOINT, *args, "--out", tmp_path / "out"], capsys)
    assert named in one_line_error(result)
