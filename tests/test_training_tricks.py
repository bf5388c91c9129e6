"""airbench's techniques as settings: the whitened stem and batch-norm settings; and the smaller early epochs
(progressive resizing)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from cifar_lightning.data import Augmentation
from cifar_lightning.data.augment import MIN_SIDE
from cifar_lightning.data.datamodule import ImageDataModule
from cifar_lightning.data.device_batches import DeviceSplit, TrainBatches
from cifar_lightning.errors import CheckpointError, ConfigError
from cifar_lightning.models import CompactNet, PatchWhitening, ResidualCompactNet, SeedNet
from cifar_lightning.training import ImageClassifier
from harness import CONFIG, REPO, TINY, data_args, main_in_process

FAST = str(REPO / "configs" / "fast.yaml")
WHITENED = ["--model.network=cifar_lightning.models.CompactNet", "--model.network.stem=whiten"]
FIT_WHITENING = ["--trainer.callbacks+=cifar_lightning.callbacks.FitPatchWhitening", "--trainer.callbacks.images=64"]


def correlated_images(count: int = 64) -> torch.Tensor:
    base = torch.randn(count, 1, 32, 32)
    return torch.cat([base, 0.5 * base + torch.randn_like(base), 3 * torch.randn_like(base)], 1)


def test_patch_whitening_decorrelates_its_outputs_and_its_weights_stay_frozen():
    layer = PatchWhitening(3, kernel=2)
    assert layer.out_channels == 24 and not layer.weight.requires_grad and layer.bias.requires_grad
    assert not layer.weight.any()  # unfitted: zero, not random
    images = correlated_images()
    layer.fit(images)
    outputs = nn.functional.conv2d(images, layer.weight)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = torch.cov(outputs.T)
    assert torch.allclose(covariance, torch.eye(12), atol=0.01)  # the floor moves the unit variance by under 1%
    assert torch.equal(layer.weight[12:], -layer.weight[:12])  # each direction with both signs


@pytest.mark.parametrize("network", [CompactNet, ResidualCompactNet])
def test_the_whitened_stem_and_the_batch_norm_settings_build(network):
    net = network(stem="whiten", bn_momentum=0.6, bn_train_scale=False)
    assert isinstance(net.features[0][0], PatchWhitening)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # 31 x 31 after the 2x2 stem, still a 10-way head
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.6 and not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    assert sum(p.numel() for p in net.parameters()) < 200_000
    with pytest.raises(ValueError, match="stem_width must be 24"):
        network(stem="whiten", stem_width=32)


def test_the_first_epochs_train_at_the_sides_the_schedule_gives_then_at_full_size():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    images[:8] = 200  # flat images stay flat when shrunk: the resize keeps values, it does not rescale them
    split = DeviceSplit(images, np.arange(64) % 10, (0.5,) * 3, (0.25,) * 3, torch.device("cpu"))
    aug = Augmentation(hflip_p=0.5, affine_p=1.0, shift_px=2, scale=0.0, rotate=0.0, cutout_p=0.0, epoch_sides=(16, 24))
    sides = []
    for epoch in range(3):
        batches = TrainBatches(split, batch_size=32, augmentation=aug, seed=1, epoch=epoch)
        order = batches.sampler.permutation()
        batch, labels = next(iter(batches))
        sides.append(tuple(batch.shape))
        flat = batch[torch.as_tensor(order[:32] < 8)]
        assert torch.allclose(flat, flat[:, :, :1, :1].expand_as(flat), atol=1e-5)
        assert torch.allclose(
            flat[:, :, 0, 0], split.batch(torch.tensor([0]))[0][:, :, 0, 0].expand(len(flat), 3), atol=1e-5
        )
    assert sides == [(32, 3, 16, 16), (32, 3, 24, 24), (32, 3, 32, 32)]
    plain = TrainBatches(
        split,
        batch_size=32,
        augmentation=Augmentation(hflip_p=0.5, affine_p=1.0, shift_px=2, scale=0.0, rotate=0.0, cutout_p=0.0),
        seed=1,
        epoch=2,
    )
    assert torch.equal(next(iter(plain))[0], batch)  # past the schedule, the same images as without one


@pytest.mark.parametrize("sides", [(0,), (15,), (33,), (16, 2.5), (True,)])
def test_a_side_outside_the_image_is_refused_in_one_line(sides):
    with pytest.raises(ConfigError, match="epoch_sides holds .* in \\[16, 32\\]"):
        Augmentation(epoch_sides=sides)


@pytest.mark.parametrize(
    "network", [CompactNet(stem="whiten"), ResidualCompactNet(stem="whiten"), CompactNet(), SeedNet()]
)
def test_every_network_takes_the_smallest_side(network):
    assert network(torch.randn(2, 3, MIN_SIDE, MIN_SIDE)).shape == (2, 10)


@pytest.mark.parametrize("sides", ["[24]", "[32,16]"])
def test_a_network_that_cannot_take_a_scheduled_side_is_one_line_before_training(refused, sides):
    error = refused(
        "fit",
        "--config",
        CONFIG,
        *data_args(),
        *TINY,
        "--model.network=helpers.Flat32Net",
        f"--data.augmentation.epoch_sides={sides}",
    )
    assert "the network cannot take" in error and "x" in error and "global pooling" in error


def test_the_side_schedule_is_refused_by_the_albumentations_pipeline():
    with pytest.raises(ConfigError, match="epoch_sides needs data.pipeline device"):
        ImageDataModule(pipeline="albumentations", augmentation=Augmentation(epoch_sides=(16,)))


def test_a_whitened_network_without_its_fitting_callback_is_one_line(refused):
    error = refused("fit", "--config", CONFIG, *data_args(), *TINY, *WHITENED)
    assert "FitPatchWhitening" in error


def test_the_fitting_callback_without_a_whitened_network_is_one_line(refused):
    error = refused("fit", "--config", CONFIG, *data_args(), *TINY, *FIT_WHITENING)
    assert "has no PatchWhitening stem" in error and "stem: whiten" in error


def test_a_whitened_fit_fits_the_stem_and_stops_training_its_bias(tmp_path, real_data_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the fast recipe: no EMA, whose average of the bias would go on moving after the bias stops
    args = [
        "fit",
        "--config",
        FAST,
        *data_args(real_data_dir),
        *TINY,
        "--trainer.max_epochs=2",
        *WHITENED,
        *FIT_WHITENING,
        "--trainer.callbacks.bias_epochs=1",
        "--checkpoint.save_top_k=-1",
        "--trainer.log_every_n_steps=1",
        "--model.network.bn_train_scale=false",
        "--data.augmentation.hflip_p=0.5",
        "--data.augmentation.epoch_sides=[16]",
    ]
    assert main_in_process(args, capsys).returncode == 0
    ckpt = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    state = ckpt["state_dict"]
    assert state["network.features.0.0.weight"].abs().sum() > 0  # fitted
    # the bias moved in epoch 0 and stayed in epoch 1: compare with the checkpoint after epoch 0
    first = torch.load(
        next((tmp_path / "lightning_logs/version_0/checkpoints").glob("epoch000*.ckpt")), weights_only=True
    )
    assert first["state_dict"]["network.features.0.0.bias"].abs().sum() > 0
    assert torch.equal(first["state_dict"]["network.features.0.0.bias"], state["network.features.0.0.bias"])
    # the report's rate column
    assert main_in_process(["report", "lightning_logs/version_0", "--out", "report"], capsys).returncode == 0
    rows = list(csv.DictReader(open(tmp_path / "report/metrics.csv")))
    assert len(rows) == 2 and all(float(row["lr"]) > 0 for row in rows)


def test_a_checkpoint_of_two_parameter_groups_is_refused():
    def optimizer(params):
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)

    one = ImageClassifier(CompactNet(), optimizer=optimizer)
    parameters = list(one.parameters())
    checkpoint = {
        "network_class": "cifar_lightning.models.compact.CompactNet",
        "optimizer_states": [optimizer(parameters).state_dict()],
    }
    one.on_load_checkpoint(checkpoint)  # the module's own grouping loads
    two = optimizer([{"params": parameters[:2]}, {"params": parameters[2:]}]).state_dict()
    with pytest.raises(CheckpointError, match="2 parameter groups, this model builds one"):
        one.on_load_checkpoint({**checkpoint, "optimizer_states": [two]})
