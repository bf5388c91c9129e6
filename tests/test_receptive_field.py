"""The receptive field ``cifar-lightning summary`` computes equals the one a gradient shows.

The empirical field of a layer is the extent of input pixels with a non-zero gradient from the
layer's centre output position, on an input larger than the field, in eval mode, with every weight
made positive (and batch norm's statistics neutral) so that no ReLU closes a path. Max pooling
sends the gradient to one pixel of each window, so for the check it is replaced by average pooling
of the same geometry (the field is the same; every path stays open).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cifar_lightning.explain.receptive_field import layer_table
from cifar_lightning.models import CompactNet, SeedNet
from cifar_lightning.models.compact import ResidualCompactNet
from harness import CONFIG, main_in_process


def dilated_and_depthwise() -> nn.Module:
    """A dilation of 3, a 5x5 depthwise convolution, a stride and a max pool: each a different rule."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=3, dilation=3),
        nn.ReLU(),
        nn.Conv2d(8, 8, 5, padding=2, groups=8),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def all_paths_open(network: nn.Module) -> nn.Module:
    network = copy.deepcopy(network).eval()
    for _, module in list(network.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(parameter.abs() + 0.01)
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
    return network


def empirical_field(network: nn.Module, module_name: str, size: int) -> int:
    """Rows of input pixels whose gradient from the centre output of ``module_name`` is not zero (first to last)."""
    captured = {}
    module = dict(network.named_modules())[module_name]
    handle = module.register_forward_hook(lambda m, i, output: captured.setdefault("out", output))
    image = torch.rand(1, 3, size, size).add_(0.5).requires_grad_(True)
    network(image)
    handle.remove()
    out = captured["out"]
    out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    rows = image.grad[0].abs().sum(dim=(0, 2)).nonzero().flatten()
    return int(rows[-1] - rows[0] + 1)


NETWORKS = {
    "SeedNet": SeedNet,
    "CompactNet": CompactNet,
    "ResidualCompactNet": ResidualCompactNet,
    "dilated and depthwise": dilated_and_depthwise,
}


@pytest.mark.parametrize("name", NETWORKS)
def test_every_spatial_layers_field_is_the_empirical_one(name):
    network = NETWORKS[name]()
    rows = [row for row in layer_table(network) if len(row.shape) == 3 and row.shape[1] > 1]
    assert rows
    opened = all_paths_open(network)
    largest = max(row.field.size[0] for row in rows)
    size = 2 * largest + 16 * 2  # larger than any field, so that no border clips the centre's
    for row in rows:
        assert empirical_field(opened, row.module, size) == row.field.size[0], f"{name} {row.module}"


def test_the_seed_networks_field_and_the_residual_rule():
    seed = layer_table(SeedNet())
    by_module = {row.module: row for row in seed}
    assert by_module["features.5.0.conv"].field.size == (31, 31)  # the dilated 3x3 at jump 4 adds 2 * 2 * 4
    assert by_module["features.8.2"].field.size == (55, 55) and by_module["features.8.2"].field.jump == (
        8,
        8,
    )  # above the course's 44
    residual = {row.module: row for row in layer_table(ResidualCompactNet())}
    # a residual group's sum takes the larger of its paths: the branch's, not the shortcut's
    assert residual["features.3"].field == residual["features.3.residual.1.2"].field


def test_summary_prints_the_table_for_a_config(capsys):
    result = main_in_process(["summary", "--config", CONFIG], capsys)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Total params: 150,738" in result.stdout and "Receptive field: 55 pixels" in result.stdout
    assert result.stdout.count("\n") > 36
    at_64 = main_in_process(["summary", "--config", CONFIG, "--data.image_size=64"], capsys)
    assert "(of a 64x64 input)" in at_64.stdout  # the table is drawn at the size the config reads images
