"""Lookahead-style weight averaging: every few steps the network is pulled back to a slow average.

Every ``every`` optimizer steps the slow copy moves towards the network by ``1 - decay`` and
the network is set to it (Zhang et al., 2019, as airbench and hlb-CIFAR10 use it); at the last
step the network takes the slow copy. The decay grows with the cube of the run's progress, so
the averaging is weak while the rate is high and strong as it anneals. Written here because no
library fit: Lightning's ``WeightAveraging`` and torch's ``AveragedModel`` keep an average beside
the network and never copy it back, and torch ships no Lookahead optimizer.
"""

from __future__ import annotations

from typing import Any

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from cifar_lightning.callbacks.ema import Decay


class Lookahead(Callback):
    """Args:
        every: optimizer steps between two pulls back.
        decay: the slow copy's decay per optimizer step at the end of the run; a pull's decay is
            ``decay ** every * progress ** 3``, progress the share of the run's steps taken.
    """

    def __init__(self, every: PositiveInt = 5, decay: Decay = 0.95) -> None:
        self.every = int(PositiveInt(every))
        self.decay = float(Decay(decay))
        self.slow: dict[str, Tensor] = {}
        self.total_steps = 0

    def tensors(self, pl_module: LightningModule) -> dict[str, Tensor]:
        # the network's weights and batch-norm statistics, as airbench averages them; counts are left alone
        return {k: v for k, v in pl_module.network.state_dict(keep_vars=True).items() if v.is_floating_point()}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.total_steps = int(trainer.estimated_stepping_batches)  # once: Lightning recomputes it on every read
        if not self.slow:  # a resumed fit has its slow copy from the checkpoint
            self.slow = {k: v.detach().clone() for k, v in self.tensors(pl_module).items()}
        else:
            self.slow = {k: v.to(pl_module.device) for k, v in self.slow.items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step, total = trainer.global_step, self.total_steps
        last = step >= total
        if step % self.every and not last:
            return
        decay = 1.0 if last else self.decay**self.every * (step / total) ** 3
        for name, fast in self.tensors(pl_module).items():
            slow = self.slow[name]
            slow.lerp_(fast.detach(), 1.0 - decay)
            fast.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = dict(state_dict["slow"])
