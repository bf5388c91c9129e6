"""Stops training at a non-finite loss, on every DDP process at the same step, before any checkpoint holds it."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from cifar_lightning.callbacks.messages import last_checkpoint_path
from cifar_lightning.callbacks.progress import is_logging_step
from cifar_lightning.errors import UserError


class NonFiniteLossError(UserError):
    """Training diverged."""


class FiniteLossGuard(Callback):
    """Stops training once a step's loss has been NaN or infinite, before any checkpoint holds it. Each step folds
    its loss into a flag on the device, read at logging steps, epoch ends and saves (Lightning's checks are
    per epoch, or slow)."""

    def __init__(self) -> None:
        self._first_bad: torch.Tensor | None = None  # on the device: the first non-finite step, or -1
        self._bad_loss: torch.Tensor | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._first_bad = torch.full((), -1, dtype=torch.long, device=pl_module.device)
        self._bad_loss = torch.zeros((), device=pl_module.device)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and self._first_bad is not None:
            loss = loss.detach().float()
            new = (self._first_bad < 0) & ~torch.isfinite(loss).all()
            self._first_bad = torch.where(new, trainer.global_step, self._first_bad)
            self._bad_loss = torch.where(new, loss, self._bad_loss)
        if is_logging_step(trainer):
            self.check(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        self.check(trainer)  # raising here stops the save before anything is written

    def check(self, trainer: Trainer) -> None:
        """Raise ``NonFiniteLossError`` if any step so far, on any process, had a non-finite loss (one read of the flag)."""
        if self._first_bad is None:
            return
        flag = torch.stack([self._first_bad.double(), self._bad_loss.double()])  # one read: step and loss together
        # under DDP every process must stop at the same step, or the others would wait for ever in
        # the next gradient all-reduce: every process reads every process's flag (one small all-gather)
        if trainer.world_size > 1:
            flag = trainer.strategy.all_gather(flag)
        flags = flag.reshape(-1, 2).tolist()
        bad = sorted((int(step), loss, rank) for rank, (step, loss) in enumerate(flags) if step >= 0)
        if not bad:
            return
        self._first_bad = None  # said once, also when the save that follows an error checks again
        step, value, process = bad[0]  # the first step at which any process's loss was not finite
        last = last_checkpoint_path(trainer) or "none yet"
        raise NonFiniteLossError(
            f"the training loss became {value} at epoch {trainer.current_epoch}, step {step}"
            f"{' (on process ' + str(process) + ')' if trainer.world_size > 1 else ''}: "
            "lower the peak learning rate (--model.optimizer.init_args.lr) or clip gradients "
            f"(--trainer.gradient_clip_val 1.0); last good checkpoint: {last}"
        )
