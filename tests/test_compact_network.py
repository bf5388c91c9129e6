"""CompactNet stays under the 200,000-parameter budget and maps 32x32 images to class logits."""

import pytest
import torch

from cifar_lightning.models import CompactNet, ResidualCompactNet


def test_parameter_count_is_pinned_and_under_budget():
    # 194,130 = convolutions 192,456 + batch norm 784 + head 890; a change here must be deliberate
    assert sum(p.numel() for p in CompactNet().parameters()) == 194_130
    assert sum(p.numel() for p in ResidualCompactNet().parameters()) == 184_226


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("network_class", [CompactNet, ResidualCompactNet])
def test_forward_shape_and_channels_last(batch, network_class):
    network = network_class(num_classes=7).eval()
    images = torch.randn(batch, 3, 32, 32)
    logits = network(images)
    assert logits.shape == (batch, 7)
    channels_last = network.to(memory_format=torch.channels_last)(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, logits, rtol=1e-4, atol=1e-4)
