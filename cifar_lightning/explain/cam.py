"""Grad-CAM maps (the grad-cam package's ``GradCAM``) of a network's layer for a batch, and their overlays; the
default layer is the last convolution, where the class evidence is most specific."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


def conv_layers(network: nn.Module) -> list[str]:
    """The names of the network's 2-D convolutions, in definition order."""
    return [name for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]


def default_layer(network: nn.Module) -> str:
    layers = conv_layers(network)
    if not layers:
        raise ValueError(
            f"{type(network).__name__} has no Conv2d layer to explain: name a layer that outputs a feature map"
        )
    return layers[-1]


def find_layer(network: nn.Module, layer: str | None) -> nn.Module:
    name = layer or default_layer(network)
    modules = dict(network.named_modules())
    if name not in modules or name == "":
        shown = ", ".join(conv_layers(network)[-6:])
        raise ValueError(f"{type(network).__name__} has no layer {name!r}: name one of its modules, e.g. {shown}")
    return modules[name]


def activation_maps(
    network: nn.Module, inputs: Tensor, layer: str | None = None, classes: Sequence[int] | None = None
) -> np.ndarray:
    """N x H x W maps in [0, 1] for normalised ``inputs``, of ``classes`` (default: each image's predicted class)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    was_training = network.training
    network.eval()
    targets = None if classes is None else [ClassifierOutputTarget(int(c)) for c in classes]
    # evaluation may run under inference mode; Grad-CAM needs the gradient of the logits
    with torch.inference_mode(False), torch.enable_grad():
        inputs = inputs.detach().clone().float().requires_grad_(True)
        with GradCAM(model=network, target_layers=[find_layer(network, layer)]) as cam:
            maps = cam(input_tensor=inputs, targets=targets)
    network.train(was_training)
    return np.nan_to_num(maps.astype(np.float32))


def overlay(images: np.ndarray, maps: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The maps as a colour map over the images: N x H x W x 3 uint8 from uint8 images and [0, 1] maps."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, not {opacity}")
    return np.stack(
        [
            show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=1.0 - opacity)
            for image, cam in zip(images, maps)
        ]
    )
