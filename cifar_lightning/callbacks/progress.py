"""Lightning's Rich progress bar, showing the step's figures as of the last logging step: the only steps where a
callback reads a value back from the device."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar


def is_logging_step(trainer: Trainer) -> bool:
    """Whether the step that just ended is one where Lightning logs step metrics: the only reads from the device."""
    return trainer.log_every_n_steps > 0 and trainer.global_step % trainer.log_every_n_steps == 0


# figures logged every step (or every logging step) but not as progress-bar values: Lightning
# converts each progress-bar value to a number after every batch, a read from the device each
STEP_FIGURES = ("train/loss_step", "img/s")


class LoggingStepProgressBar(RichProgressBar):
    """Lightning's bar, with the loss and images per second read only at logging steps and epoch ends (a GPU waits
    at every read)."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self._shown: dict | None = None

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        if not trainer.training or self._shown is None or is_logging_step(trainer):
            shown = super().get_metrics(trainer, pl_module)
            figures = trainer.callback_metrics
            shown.update({key: float(figures[key]) for key in STEP_FIGURES if key in figures})
            self._shown = shown
        return self._shown

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._shown = None  # the epoch's figures are read once, at its end
        super().on_train_epoch_end(trainer, pl_module)
