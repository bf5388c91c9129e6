"""Stops training at the first non-finite loss, on every DDP process at the same step."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from cifar_lightning.callbacks.messages import last_checkpoint_path
from cifar_lightning.errors import UserError


class NonFiniteLossError(UserError):
    """Training diverged."""


class FiniteLossGuard(Callback):
    """Stops training at the first step whose loss is NaN or infinite.

    Lightning has no per-step check (``detect_anomaly`` is slow; ``EarlyStopping(check_finite)``
    looks only at its monitored metric once per epoch). Stopping by an exception means no
    checkpoint is written from the diverged weights: ``last.ckpt`` stays the last good epoch.
    """

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        diverged = loss is not None and not bool(torch.isfinite(loss).all())
        # under DDP every process must stop at the same step, or the others would wait for ever in
        # the next gradient all-reduce: one small all-reduce of the flag, as SpikeDetection does
        if trainer.world_size > 1:
            diverged = trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if diverged:
            last = last_checkpoint_path(trainer) or "none yet"
            raise NonFiniteLossError(
                f"the training loss became {_loss_value(loss)} at epoch {trainer.current_epoch}, step {trainer.global_step}: "
                "lower the peak learning rate (--model.optimizer.init_args.lr) or clip gradients "
                f"(--trainer.gradient_clip_val 1.0); last good checkpoint: {last}"
            )


def _loss_value(loss) -> str:
    """This process's loss, or that another DDP process diverged while this one's stayed finite."""
    value = float(loss) if loss is not None else float("nan")
    return str(value) if not torch.isfinite(torch.tensor(value)) else "non-finite on another DDP process"
