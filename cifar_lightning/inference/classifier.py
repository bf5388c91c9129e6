"""A trained model in plain Python: ``cifar_lightning.load(path).predict(images)`` (docs/python.md).

The checkpoint is data (``training.trust``); its normalization, classes, size and views are used, not the data's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from cifar_lightning.data.images import decode_image
from cifar_lightning.data.preprocessing import TTA_VIEWS, check_preprocessing
from cifar_lightning.errors import CheckpointError
from cifar_lightning.runs.checkpoints import read_checkpoint
from cifar_lightning.training.module import ImageClassifier, averaged_views
from cifar_lightning.training.trust import NETWORK_PREFIX, build_network, check_checkpoint, trusted_names

ImageLike = str | Path | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    label: str  # the most probable class
    probability: float  # its probability
    probabilities: dict[str, float]  # every class's probability
    tta: str = "none"  # the test-time views averaged: the run's (``model.tta``) unless the caller asked for others


class TrainedClassifier(nn.Module):
    """A trained network behind its own preprocessing: RGB in [0, 1] (N x 3 x H x W) in, logits out, averaged
    over the run's test-time views (``tta``), so the command line, Python, the demo and an export answer alike."""

    def __init__(
        self,
        network: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        class_names: Sequence[str],
        input_size: Sequence[int] = (32, 32),
        tta: str = "none",
    ) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))
        self.class_names = list(class_names)
        self.input_size = tuple(input_size)
        self.tta = tta

    def forward(self, images: Tensor) -> Tensor:
        return averaged_views(self.network, (images - self.mean) / self.std, self.tta)

    def to_tensor(self, images: ImageLike | Sequence[ImageLike]) -> Tensor:
        """One image or a list of them as an N x 3 x H x W float batch in [0, 1], resized to the input size."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        return torch.stack([self._one(image) for image in images])

    def _one(self, image: ImageLike) -> Tensor:
        pixels = decode_image(image, self.input_size[0])  # the one reader: files, PIL images, arrays of any depth
        return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)

    @torch.no_grad()
    def predict(self, images: ImageLike | Sequence[ImageLike], tta: str | None = None) -> list[Prediction]:
        """Class and probabilities for each image: file paths, PIL images, or arrays (H x W grayscale, or
        H x W x 1, 3 or 4 channels; uint8, 16-bit or float in [0, 1]). ``tta``: other test-time views than the
        run's (``none``, ``flip``, ``flip_shift``); each Prediction says which were averaged."""
        used = self.tta if tta is None else tta
        if used not in TTA_VIEWS:
            raise ValueError(f"tta must be none, flip or flip_shift, not {used!r}")
        batch = (self.to_tensor(images).to(self.mean.device) - self.mean) / self.std
        was_training = self.training
        self.eval()
        try:
            probabilities = averaged_views(self.network, batch, used).float().softmax(dim=1).cpu()
        finally:
            self.train(was_training)
        return [
            Prediction(
                label=self.class_names[int(row.argmax())],
                probability=float(row.max()),
                probabilities={name: float(p) for name, p in zip(self.class_names, row)},
                tta=used,
            )
            for row in probabilities
        ]

    def activation_maps(
        self,
        images: ImageLike | Sequence[ImageLike],
        layer: str | None = None,
        classes: Sequence[int | str] | None = None,
    ) -> np.ndarray:
        """Grad-CAM map of ``layer`` (default: the last convolution) for each image, N x H x W in [0, 1], of
        ``classes`` (an index or name each; default: the predicted one)."""
        from cifar_lightning.explain import activation_maps

        batch = self.to_tensor(images).to(self.mean.device)
        if classes is not None:
            classes = [self.class_names.index(c) if isinstance(c, str) else int(c) for c in classes]
        else:  # the class predict answers, over the run's views
            with torch.no_grad():
                classes = self(batch).argmax(1).tolist()
        return activation_maps(self.network, (batch - self.mean) / self.std, layer, classes)


def load(
    path: str | Path, map_location: str | torch.device = "cpu", trusted: list[str | type] | str | None = None
) -> TrainedClassifier:
    """The trained model in a checkpoint, in eval mode; ``trusted``: class names besides the project's to import.
    The file is read once, checked as data, and its network built for real only after its shapes passed."""
    checkpoint = read_checkpoint(path)
    check_checkpoint(checkpoint, ImageClassifier, trusted, str(path))
    spec = (checkpoint.get("hyper_parameters") or {}).get("network")
    if "preprocessing" not in checkpoint or spec is None:
        raise CheckpointError(
            f"{path} carries no network class_path or preprocessing, which this project's checkpoints hold: "
            "load it with ImageClassifier.load_from_checkpoint(path, network=...), or retrain it"
        )
    preprocessing = check_preprocessing(checkpoint["preprocessing"], str(path))
    # not ImageClassifier.load_from_checkpoint: it takes a path and reads the file twice more after these checks
    network = build_network(spec, trusted_names(trusted), str(path), device="cpu")
    prefix = len(NETWORK_PREFIX)  # check_checkpoint allowed no other key
    network.load_state_dict({key[prefix:]: value for key, value in checkpoint["state_dict"].items()})
    model = TrainedClassifier(
        network,
        preprocessing["mean"],
        preprocessing["std"],
        preprocessing["class_names"],
        preprocessing["input_size"],
        preprocessing["tta"],
    )
    return model.to(map_location).eval()
