"""Compact CNNs trained fast on CIFAR-10 with PyTorch Lightning.

``cifar_lightning.load(path)`` gives a trained model with ``.predict(images)``; the command
line is ``cifar-lightning`` (or ``python -m cifar_lightning``).

Where things live (docs/architecture.md has one line per module):
``models`` the networks (plain torch), ``data`` the data module, ``training`` the
LightningModule and the checkpoint checks, ``callbacks`` cross-cutting behaviour, ``runs`` run
folders and checkpoint files, ``inference`` the trained model and its export, ``tools`` the
verbs that read run folders, ``lightning_cli`` and ``cli`` the command line.
"""

from __future__ import annotations

__all__ = ["Prediction", "TrainedClassifier", "load"]


def __getattr__(name: str):
    # imported on first use, so that ``import cifar_lightning.models`` brings in torch alone
    if name in __all__:
        from cifar_lightning.inference import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'cifar_lightning' has no attribute {name!r}")
