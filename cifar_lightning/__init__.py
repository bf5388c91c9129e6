"""Compact CNNs trained fast on CIFAR-10 with PyTorch Lightning: ``cifar_lightning.load(path).predict(images)``,
and the ``cifar-lightning`` command. docs/architecture.md has one line per module."""

from __future__ import annotations

__all__ = ["Prediction", "TrainedClassifier", "load"]


def __getattr__(name: str):
    # imported on first use, so that ``import cifar_lightning.models`` brings in torch alone
    if name in __all__:
        from cifar_lightning.inference import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'cifar_lightning' has no attribute {name!r}")
