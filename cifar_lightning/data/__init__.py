"""Labelled small images: sources and cache, split, augmentation, the LightningDataModule."""

from cifar_lightning.data.augment import Augmentation
from cifar_lightning.data.datamodule import ImageDataModule

__all__ = ["Augmentation", "ImageDataModule"]
