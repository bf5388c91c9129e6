"""A trained model outside training: ``load`` and ``predict`` (classifier.py), torch.export and ONNX (export.py)."""

from cifar_lightning.inference.classifier import Prediction, TrainedClassifier, load

__all__ = ["Prediction", "TrainedClassifier", "load"]
