"""The seed network: the course assignment's 150,738-parameter CNN, layer for layer (stride-2 convolutions, a
depthwise-separable and a dilated one, global average pooling); tests/test_seed_network.py checks its table."""

from torch import Tensor, flatten, nn


class DepthwiseSeparableConv(nn.Module):
    """3x3 depthwise convolution then a 1x1 pointwise one, both with a bias, as in the seed."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class DilatedConv(nn.Module):
    """3x3 convolution with holes (a 5x5 field at dilation 2), padded to keep the size."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ConvBNReLU(nn.Sequential):
    """Plain 3x3 convolution (no bias: batch norm follows), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Normalized(nn.Sequential):
    """Any convolution block followed by batch norm and ReLU."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__(conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class SeedNet(nn.Module):
    """Four stages at 32, 16, 8 and 4 pixels, then global average pooling and a linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            # 32x32
            ConvBNReLU(3, 16),
            Normalized(DepthwiseSeparableConv(16, 24), 24),
            # 16x16
            ConvBNReLU(24, 32, stride=2),
            Normalized(DepthwiseSeparableConv(32, 48), 48),
            # 8x8: the dilated conv widens the receptive field without downsampling again
            ConvBNReLU(48, 64, stride=2),
            Normalized(DilatedConv(64, 64, dilation=2), 64),
            # 4x4
            ConvBNReLU(64, 96, stride=2),
            Normalized(DepthwiseSeparableConv(96, 128), 128),
            # 1x1 squeeze to 48 channels keeps the head small (6,144 weights)
            Normalized(nn.Conv2d(128, 48, 1, bias=False), 48),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(48, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(flatten(self.pool(self.features(x)), 1))
