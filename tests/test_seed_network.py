"""The seed network matches the published torchsummary layer table row by row."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from cifar_lightning.models import SeedNet

TABLE = Path(__file__).parent / "data" / "seed_layer_table.txt"  # copied verbatim from seed-model.md
ROW = re.compile(r"^\s*(\w+)-(\d+)\s+\[(-?\d+(?:, -?\d+)*)\]\s+([\d,]+)$")


def published_rows() -> list[tuple[str, list[int], int]]:
    rows = []
    for line in TABLE.read_text().splitlines():
        match = ROW.match(line)
        if match:
            kind, _, shape, params = match.groups()
            rows.append((kind, [int(d) for d in shape.split(", ")], int(params.replace(",", ""))))
    return rows


def torchsummary_rows(model: nn.Module, input_size=(3, 32, 32)) -> list[tuple[str, list[int], int]]:
    """What torchsummary prints: one row per module that is not a container, in forward-hook order,
    counting only that module's own ``weight`` and ``bias``."""
    rows, hooks = [], []

    def hook(module, inputs, output):
        params = sum(
            getattr(module, name).numel()
            for name in ("weight", "bias")
            if isinstance(getattr(module, name, None), torch.Tensor)
        )
        rows.append((type(module).__name__, [-1, *output.shape[1:]], params))

    for module in model.modules():
        if module is not model and not isinstance(module, (nn.Sequential, nn.ModuleList)):
            hooks.append(module.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *input_size))
    for h in hooks:
        h.remove()
    return rows


def test_table_fixture_is_complete():
    rows = published_rows()
    assert len(rows) == 36
    assert sum(params for *_, params in rows) == 150_738


def test_seed_network_matches_published_table_row_by_row():
    ours, theirs = torchsummary_rows(SeedNet()), published_rows()
    assert len(ours) == len(theirs)
    for index, (mine, published) in enumerate(zip(ours, theirs), start=1):
        assert mine == published, f"row {index}: ours {mine}, published {published}"


def test_seed_network_has_150738_trainable_parameters():
    assert sum(p.numel() for p in SeedNet().parameters() if p.requires_grad) == 150_738


@pytest.mark.parametrize("num_classes", [10, 100])
def test_seed_network_outputs_logits_per_class(num_classes):
    assert SeedNet(num_classes)(torch.zeros(4, 3, 32, 32)).shape == (4, num_classes)
