"""CompactNet: airbench's shape (stem, three conv-pool-norm-conv groups, global max-pool, linear head) under
200,000 parameters; widths (32, 64, 88) put 62% of them on the small maps, near 20M multiply-adds an image. Its
optional stem is airbench's frozen 2x2 patch whitening (``PatchWhitening``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

# added to each eigenvalue: keeps the near-flat directions of JPEG patches from being scaled up
# without bound (airbench's value, in units of normalised pixel variance)
EIGENVALUE_FLOOR = 5e-4


class PatchWhitening(nn.Conv2d):
    """A ``kernel`` x ``kernel`` convolution, no padding, ``2 * in_channels * kernel**2`` outputs; zero until fitted."""

    def __init__(self, in_channels: int = 3, kernel: int = 2) -> None:
        super().__init__(in_channels, 2 * in_channels * kernel * kernel, kernel, padding=0, bias=True)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, images: Tensor) -> None:
        """Sets the weights from N x C x H x W normalised training images."""
        k = self.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N x C x H' x W' x k x k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, self.in_channels * k * k).double()
        covariance = torch.cov(patches.T)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / (eigenvalues + EIGENVALUE_FLOOR).sqrt()[:, None]).flip(0)  # largest first
        filters = filters.reshape(-1, self.in_channels, k, k).to(self.weight.dtype)
        self.weight.copy_(torch.cat([filters, -filters]))  # copy_ keeps the weight's own memory layout


Norm = Callable[[int], nn.Module]  # a normalisation layer for a channel count


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    # no bias: batch norm follows every convolution
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


def batch_norm(channels: int, momentum: float = 0.1, train_scale: bool = True) -> nn.BatchNorm2d:
    """torch's BatchNorm2d; ``train_scale=False`` keeps its scale at 1 and trains only its shift, as airbench."""
    norm = nn.BatchNorm2d(channels, momentum=momentum)
    norm.weight.requires_grad_(train_scale)
    return norm


class ConvBNAct(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, norm: Norm = nn.BatchNorm2d) -> None:
        super().__init__(conv3x3(in_channels, out_channels), norm(out_channels), nn.GELU())


class ConvGroup(nn.Sequential):
    """Two 3x3 convolutions with a 2x2 max-pool after the first (``pool``): halves the side, widens."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool = True, norm: Norm = nn.BatchNorm2d) -> None:
        super().__init__(
            conv3x3(in_channels, out_channels),
            nn.MaxPool2d(2) if pool else nn.Identity(),
            norm(out_channels),
            nn.GELU(),
            ConvBNAct(out_channels, out_channels, norm),
        )


class CompactNet(nn.Module):
    """32x32 stem, groups at 16, 8 and 4 pixels, global max-pool, linear head.

    Args:
        num_classes: outputs of the linear head.
        stem_width: channels of the full-resolution stem convolution.
        widths: output channels of the three groups.
        pools: whether each group halves the side (``(False, True, True)``: 2.5x the multiply-adds).
        stem: ``conv``, a trained 3x3 convolution; ``whiten``, a frozen 2x2 ``PatchWhitening`` (24 channels,
            fitted by the ``FitPatchWhitening`` callback).
        bn_momentum: every batch norm's ``momentum``.
        bn_train_scale: train the batch norms' scales; ``False`` keeps them at 1 and trains only the shifts.
    """

    def __init__(
        self,
        num_classes: int = 10,
        stem_width: int = 24,
        widths: tuple[int, int, int] = (32, 64, 88),
        pools: tuple[bool, bool, bool] = (True, True, True),
        stem: Literal["conv", "whiten"] = "conv",
        bn_momentum: float = 0.1,
        bn_train_scale: bool = True,
    ) -> None:
        super().__init__()
        self.norm = partial(batch_norm, momentum=bn_momentum, train_scale=bn_train_scale)
        if stem == "whiten":
            whitening = PatchWhitening(3, kernel=2)
            if stem_width != whitening.out_channels:
                raise ValueError(
                    f"stem: whiten gives {whitening.out_channels} channels, so stem_width must be {whitening.out_channels}, not {stem_width}"
                )
            first: nn.Module = nn.Sequential(whitening, nn.GELU())
        else:
            first = ConvBNAct(3, stem_width, self.norm)
        channels = [stem_width, *widths]
        self.features = nn.Sequential(
            first,
            *(self.make_group(c_in, c_out, pool) for c_in, c_out, pool in zip(channels, channels[1:], pools)),
        )
        # max rather than average pooling, as in airbench: the strongest response anywhere
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def make_group(self, in_channels: int, out_channels: int, pool: bool) -> nn.Module:
        return ConvGroup(in_channels, out_channels, pool, self.norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class ResidualGroup(nn.Module):
    """A ConvGroup's downsampling conv, then two more 3x3 convolutions added back (a residual)."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm = nn.BatchNorm2d) -> None:
        super().__init__()
        self.down = nn.Sequential(conv3x3(in_channels, out_channels), nn.MaxPool2d(2), norm(out_channels), nn.GELU())
        self.residual = nn.Sequential(
            ConvBNAct(out_channels, out_channels, norm), ConvBNAct(out_channels, out_channels, norm)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        return x + self.residual(x)


class ResidualCompactNet(CompactNet):
    """CompactNet deeper and narrower: a residual pair in each group, widths (32, 48, 64), 184,226 parameters."""

    def __init__(
        self,
        num_classes: int = 10,
        stem_width: int = 24,
        widths: tuple[int, int, int] = (32, 48, 64),
        stem: Literal["conv", "whiten"] = "conv",
        bn_momentum: float = 0.1,
        bn_train_scale: bool = True,
    ) -> None:
        super().__init__(
            num_classes, stem_width, widths, stem=stem, bn_momentum=bn_momentum, bn_train_scale=bn_train_scale
        )

    def make_group(self, in_channels: int, out_channels: int, pool: bool) -> nn.Module:
        return ResidualGroup(in_channels, out_channels, self.norm)  # always pools
