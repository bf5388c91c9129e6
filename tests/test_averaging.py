"""The weight average follows the network from the first steps, then settles to its full horizon."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

from cifar_lightning.callbacks.ema import EMAWithWarmup, WarmupEMA


def test_the_average_tracks_the_network_early_and_keeps_the_full_decay_later():
    network = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        network.weight.zero_()
    warm = AveragedModel(network, avg_fn=WarmupEMA(0.999))
    fixed = AveragedModel(network, avg_fn=lambda avg, cur, n: 0.999 * avg + 0.001 * cur)  # Lightning's EMA
    warm.update_parameters(network)  # the first update copies: both start at the initial weights
    fixed.update_parameters(network)
    with torch.no_grad():
        network.weight.fill_(1.0)  # the network moves away from its initial weights
    for _ in range(100):
        warm.update_parameters(network)
        fixed.update_parameters(network)
    assert warm.module.weight.min() > 0.9  # follows the network after 100 steps
    assert fixed.module.weight.max() < 0.1  # the fixed decay still holds ~90% of the initial weights
    late = WarmupEMA(0.999)(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(100_000))
    assert abs(float(late) - 0.001) < 1e-6  # once warmed up, the configured decay


def test_decay_out_of_range_is_refused():
    import pytest

    with pytest.raises(ValueError, match="1.0 does not conform to restriction v>=0.0 and v<1.0"):
        EMAWithWarmup(decay=1.0)
