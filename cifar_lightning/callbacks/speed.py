"""Images per second and epoch time, in the logger and on the progress bar, without waiting for the device."""

from __future__ import annotations

import time

from lightning.pytorch import Callback, LightningModule, Trainer

from cifar_lightning.callbacks.progress import is_logging_step


class SpeedMonitor(Callback):
    """Images per second (this process, all processes, the bar's ``img/s``) and ``time/epoch_s``, timed on the host
    between logging steps: Lightning's ``ThroughputMonitor`` synchronizes the GPU every batch."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_started = self._window_started = time.perf_counter()
        self._epoch_images = self._window_images = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        images = len(batch[0])  # a shape, not a value: nothing is read from the device
        self._epoch_images += images
        self._window_images += images
        if not is_logging_step(trainer):
            return
        now = time.perf_counter()
        rate = self._window_images / max(now - self._window_started, 1e-9)
        self._window_started, self._window_images = now, 0
        pl_module.log("train/device/samples_per_sec", rate, on_step=True, on_epoch=False)
        pl_module.log("train/samples_per_sec", rate * trainer.world_size, on_step=True, on_epoch=False)
        # not a progress-bar value (Lightning would read it back every batch): the bar shows it from here
        pl_module.log("img/s", self._epoch_rate(now), logger=False, on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        now = time.perf_counter()
        pl_module.log("time/epoch_s", now - self._epoch_started, on_step=False, on_epoch=True)
        pl_module.log("img/s", self._epoch_rate(now), logger=False, on_step=False, on_epoch=True)

    def _epoch_rate(self, now: float) -> float:
        return self._epoch_images / max(now - self._epoch_started, 1e-9)
