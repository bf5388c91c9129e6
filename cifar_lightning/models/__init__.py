"""Networks: plain ``torch.nn`` modules that know nothing of Lightning."""

from cifar_lightning.models.compact import CompactNet, PatchWhitening, ResidualCompactNet
from cifar_lightning.models.seed import DepthwiseSeparableConv, DilatedConv, SeedNet

__all__ = ["CompactNet", "PatchWhitening", "ResidualCompactNet", "DepthwiseSeparableConv", "DilatedConv", "SeedNet"]
