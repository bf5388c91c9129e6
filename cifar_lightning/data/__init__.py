"""CIFAR-10 data: sources and cache, split, augmentation, the LightningDataModule."""

from cifar_lightning.data.augment import Augmentation
from cifar_lightning.data.datamodule import CIFAR10DataModule

__all__ = ["Augmentation", "CIFAR10DataModule"]
