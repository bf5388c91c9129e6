"""What a person reads at the end of a fit, a test or an interrupted run: results, paths, next commands."""

from __future__ import annotations

import re
import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.errors import shell_command
from cifar_lightning.runs import loggers as run_loggers


def last_checkpoint_path(trainer: Trainer) -> str:
    """The newest every-epoch checkpoint (the unmonitored ModelCheckpoint's file), or ""."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", "") is None and callback.best_model_path:
            return callback.best_model_path
    return ""


class FitSummary(Callback):
    """Ends ``fit`` with what a person wants to know next: how good, how long, where it is."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_score", None)
        minutes = (time.perf_counter() - self.started) / 60
        lines = [f"fit finished: {trainer.current_epoch} epochs, {trainer.global_step} steps, {minutes:.1f} min"]
        if best is not None:
            epoch = re.search(r"epoch(\d+)", Path(checkpoint.best_model_path).name)
            at = f" at epoch {int(epoch.group(1))}" if epoch else ""
            lines.append(f"  best {checkpoint.monitor} = {float(best):.4f}{at}: {checkpoint.best_model_path}")
        if last_checkpoint_path(trainer):
            lines.append(f"  last checkpoint: {last_checkpoint_path(trainer)}")
        if trainer.log_dir:
            lines.append(
                f"  test it:  {shell_command()} test --config {trainer.log_dir}/config.yaml --ckpt_path <checkpoint>"
            )
            lines.append(f"  report:   {shell_command()} report {trainer.log_dir}")
            if any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers):
                lines.append(f"  curves:   {shell_command('tensorboard')} --logdir {Path(trainer.log_dir).parent}")
            for logger in trainer.loggers[1:]:  # the first keeps the run folder
                lines.append(f"  {type(logger).__name__}: {run_loggers.store_of(logger)}")
        rank_zero_info("\n".join(lines))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "test/acc" in trainer.callback_metrics:
            rank_zero_info(
                f"test accuracy: {float(trainer.callback_metrics['test/acc']):.4f} ({trainer.ckpt_path or 'current weights'})"
            )


class ResumeHint(Callback):
    """On Ctrl-C or SIGTERM, say how to resume from the last checkpoint (``--ckpt_path last``)."""

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.log_dir is None:
            return
        last = last_checkpoint_path(trainer)
        where = f"from {last}" if last else "(no checkpoint yet: the first epoch had not finished)"
        rank_zero_info(
            f"stopped at epoch {trainer.current_epoch}, step {trainer.global_step}; resume {where} with: "
            f"{shell_command()} fit --config {trainer.log_dir}/config.yaml --ckpt_path last"
        )
