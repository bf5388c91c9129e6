"""Test-only callbacks, importable by class_path from the CLI (tests/ is on sys.path)."""

from __future__ import annotations

import copy

from lightning.pytorch import Callback
from torch import nn


class StopAfterEpochs(Callback):
    """Stop a fit cleanly after ``epochs`` epochs, as if the job had been stopped there."""

    def __init__(self, epochs: int = 1) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class RecordTrainStart(Callback):
    """Remembers where training (re)started: epoch, step, scheduler position and optimizer state."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.epoch = trainer.current_epoch
        self.global_step = trainer.global_step
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        self.scheduler_steps = scheduler.last_epoch
        self.lr = scheduler.get_last_lr()[0]
        self.optimizer_state = copy.deepcopy(trainer.optimizers[0].state_dict())


class TinyNet(nn.Sequential):
    """A different architecture, to show a network is a config change (and to mismatch checkpoints)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
        )
