"""The weight average follows the network from the first steps, then settles to its full horizon."""

from __future__ import annotations

import copy

import pytest
import torch

from cifar_lightning.callbacks.ema import EMAWithWarmup, update_average, warmed_up_decay


def test_the_average_tracks_the_network_early_and_keeps_the_full_decay_later():
    network = torch.nn.Sequential(torch.nn.Linear(4, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        network[0].weight.zero_()
    warm, fixed = copy.deepcopy(network), copy.deepcopy(network)
    with torch.no_grad():
        warm[0].weight.fill_(5.0)  # the first update copies, whatever the average held
    update_average(warm, network, warmed_up_decay(0.999, 0))
    assert torch.equal(warm[0].weight, network[0].weight)
    with torch.no_grad():
        network[0].weight.fill_(1.0)  # the network moves away from its initial weights
        network[1].num_batches_tracked.fill_(7)
    for n in range(1, 101):
        update_average(warm, network, warmed_up_decay(0.999, n))
        update_average(fixed, network, 0.999)  # Lightning's EMA: the full decay from the start
    assert warm[0].weight.min() > 0.9  # follows the network after 100 steps
    assert fixed[0].weight.max() < 0.1  # the fixed decay still holds ~90% of the initial weights
    assert int(warm[1].num_batches_tracked) == 7  # an integer buffer is copied, not averaged
    assert warmed_up_decay(0.999, 100_000) == 0.999  # once warmed up, the configured decay


def test_decay_out_of_range_is_refused():
    with pytest.raises(ValueError, match="1.0 does not conform to restriction v>=0.0 and v<1.0"):
        EMAWithWarmup(decay=1.0)
