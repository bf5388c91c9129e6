"""Fits a network's ``PatchWhitening`` stem to the training images, and trains its bias only at first."""

from __future__ import annotations

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from cifar_lightning.errors import ConfigError
from cifar_lightning.models import PatchWhitening


def whitening_layers(pl_module: LightningModule) -> list[PatchWhitening]:
    return [m for m in pl_module.modules() if isinstance(m, PatchWhitening)]


class FitPatchWhitening(Callback):
    """Args:
    images: training images (from the fit's first batches) the patch statistics are taken from.
    bias_epochs: epochs in which the stem's bias trains (0: never).
    """

    def __init__(self, images: PositiveInt = 5000, bias_epochs: NonNegativeInt = 3) -> None:
        self.images = int(PositiveInt(images))
        self.bias_epochs = int(NonNegativeInt(bias_epochs))
        self.layers: list[PatchWhitening] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.layers = layers = whitening_layers(pl_module)  # found once, not on every step
        if not layers:
            raise ConfigError(
                "FitPatchWhitening is in trainer.callbacks but the network has no PatchWhitening stem: "
                "set model.network.init_args.stem: whiten, or leave the callback out"
            )
        if trainer.global_step > 0:  # a resumed fit has the fitted weights in its checkpoint
            return
        sample = trainer.strategy.broadcast(self.sample(trainer, pl_module.device), src=0)  # the same on every process
        for layer in layers:
            layer.fit(sample)

    def sample(self, trainer: Trainer, device: torch.device) -> Tensor:
        taken: list[Tensor] = []
        for images, _ in trainer.train_dataloader:
            taken.append(images.to(device))
            if sum(len(t) for t in taken) >= self.images:
                break
        return torch.cat(taken)[: self.images]

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        if trainer.current_epoch >= self.bias_epochs:
            for layer in self.layers:
                layer.bias.grad = None
