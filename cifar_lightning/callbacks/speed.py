"""Images per second and epoch time, in TensorBoard and on the progress bar."""

from __future__ import annotations

import time

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ThroughputMonitor


def _batch_size(batch) -> int:
    return len(batch[0])


class SpeedMonitor(ThroughputMonitor):
    """Images per second and epoch time, in TensorBoard and on the progress bar.

    Lightning's ThroughputMonitor logs ``train/samples_per_sec`` (and batches, per device)
    over a window of steps; this adds ``time/epoch_s`` (training plus validation) and an
    ``img/s`` figure on the progress bar, averaged over the epoch so far.
    """

    def __init__(self, window_size: int = 50) -> None:
        super().__init__(batch_size_fn=_batch_size, window_size=window_size)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_started = time.perf_counter()
        self._epoch_images = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._epoch_images += _batch_size(batch)
        rate = self._epoch_images / max(time.perf_counter() - self._epoch_started, 1e-9)
        pl_module.log("img/s", rate, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log("time/epoch_s", time.perf_counter() - self._epoch_started, on_step=False, on_epoch=True)
