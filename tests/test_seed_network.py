"""The seed network matches the published torchsummary layer table row by row, as `cifar-lightning summary` prints it."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from cifar_lightning.explain.receptive_field import layer_table
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


def summary_rows(model: nn.Module) -> list[tuple[str, list[int], int]]:
    """``cifar-lightning summary``'s rows (torchsummary's: every module but the containers, each with its own parameters)."""
    return [(row.name.rsplit("-", 1)[0], [-1, *row.shape], row.parameters) for row in layer_table(model)]


def test_table_fixture_is_complete():
    rows = published_rows()
    assert len(rows) == 36
    assert sum(params for *_, params in rows) == 150_738


def test_seed_network_matches_published_table_row_by_row():
    ours, theirs = summary_rows(SeedNet()), published_rows()
    assert len(ours) == len(theirs)
    for index, (mine, published) in enumerate(zip(ours, theirs), start=1):
        assert mine == published, f"row {index}: ours {mine}, published {published}"


def test_seed_network_has_150738_trainable_parameters():
    assert sum(p.numel() for p in SeedNet().parameters() if p.requires_grad) == 150_738


@pytest.mark.parametrize("num_classes", [10, 100])
def test_seed_network_outputs_logits_per_class(num_classes):
    assert SeedNet(num_classes)(torch.zeros(4, 3, 32, 32)).shape == (4, num_classes)
