"""Class-activation maps of a trained network (Grad-CAM, through the grad-cam package) and their overlays."""

from cifar_lightning.explain.cam import activation_maps, default_layer, overlay

__all__ = ["activation_maps", "default_layer", "overlay"]
