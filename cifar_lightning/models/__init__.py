"""Networks: plain ``torch.nn`` modules that know nothing of Lightning."""

from cifar_lightning.models.compact import CompactNet, ResidualCompactNet
from cifar_lightning.models.seed import DepthwiseSeparableConv, DilatedConv, SeedNet

__all__ = ["CompactNet", "ResidualCompactNet", "DepthwiseSeparableConv", "DilatedConv", "SeedNet"]
