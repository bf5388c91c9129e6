"""An exponential moving average of the weights whose horizon grows from the first step: update ``n`` decays by
``min(decay, (1 + n) / (10 + n))``. Lightning's ``EMAWeightAveraging`` starts from the random weights, so validation
read 9.4% after epoch 1 of configs/cnn.yaml (results/cnn/NOTES.md)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from jsonargparse.typing import restricted_number_type
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor, nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


def warmed_up_decay(decay: float, updates_before: int) -> float:
    """The decay of an update that follows ``updates_before`` others; 0 for the first, which copies the weights."""
    if updates_before == 0:
        return 0.0
    return min(decay, (1.0 + updates_before) / (10.0 + updates_before))


@torch.no_grad()
def update_average(average: nn.Module, current: nn.Module, decay: float, use_buffers: bool = True) -> None:
    """``average`` moves towards ``current`` by ``1 - decay``: floating tensors by one fused lerp, integer
    buffers (BatchNorm's batch count) copied. The decay is a host number, so nothing is read from the device."""

    def tensors(module: nn.Module) -> list[Tensor]:
        return list(itertools.chain(module.parameters(), module.buffers()) if use_buffers else module.parameters())

    pairs = list(zip(tensors(average), tensors(current), strict=True))
    floating = [(a, c.detach()) for a, c in pairs if a.is_floating_point()]
    if floating:
        get_ema_multi_avg_fn(decay)([a for a, _ in floating], [c for _, c in floating], None)
    for a, c in pairs:
        if not a.is_floating_point():
            a.copy_(c)


# checked when the command line is parsed: [0, 1), 1 would never move from the first weights
Decay = restricted_number_type("Decay", float, [(">=", 0.0), ("<", 1.0)])


class EMAWithWarmup(WeightAveraging):
    """Validation, test and checkpoints use an EMA of the weights (Lightning's ``WeightAveraging``), updated each
    step by ``update_average``: torch's ``update_parameters`` reads its count from the device twice a call.

    Args:
        decay: the decay once warmed up; its horizon is ``1 / (1 - decay)`` steps.
        use_buffers: average BatchNorm's running statistics too, as Lightning's EMA does.
    """

    def __init__(self, decay: Decay = 0.999, use_buffers: bool = True, **kwargs: Any) -> None:
        decay = float(Decay(decay))  # the type is the rule: the parser applies it, and so does a Python caller here
        super().__init__(use_buffers=use_buffers, **kwargs)
        self.decay = decay
        self.use_buffers = use_buffers
        self._updated_at_step = 0

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return False  # the parent's own update never runs: on_train_batch_end below updates every optimizer step

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # the average is a copy made here, before the Trainer moves the module: made on the
        # training device, an update never copies the weights between devices
        if stage == "fit":
            pl_module.to(trainer.strategy.root_device)
        super().setup(trainer, pl_module, stage)

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # test, validate and predict load the saved weights, which are the average already: no averaging state
        # is restored, so there is nothing to warn about (Lightning's parent warns on every evaluation)
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step  # optimizer steps so far, this one included; once per step under accumulation
        if step <= self._updated_at_step:
            return
        average = self._average_model  # WeightAveraging's AveragedModel; Lightning offers no public accessor
        update_average(average.module, pl_module, warmed_up_decay(self.decay, step - 1), self.use_buffers)
        average.n_averaged.add_(1)
        self._updated_at_step = step

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._updated_at_step = trainer.global_step  # a resumed fit has taken this many steps already
        super().on_train_start(trainer, pl_module)
