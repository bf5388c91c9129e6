"""The LightningModule (loss, metrics, OneCycle), distillation, and the checks a checkpoint passes before it is loaded."""

from cifar_lightning.training.distillation import Distillation
from cifar_lightning.training.module import ImageClassifier

__all__ = ["Distillation", "ImageClassifier"]
