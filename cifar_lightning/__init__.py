"""Compact CNNs trained fast on CIFAR-10 with PyTorch Lightning.

``cifar_lightning.load(path)`` gives a trained model with ``.predict(images)``; the command
line is ``cifar-lightning`` (or ``python -m cifar_lightning``).
"""

from cifar_lightning.inference import Prediction, TrainedClassifier, load

__all__ = ["Prediction", "TrainedClassifier", "load"]
