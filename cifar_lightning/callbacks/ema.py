"""An exponential moving average of the weights whose horizon grows from the first step.

Lightning's ``EMAWeightAveraging`` averages with a fixed decay from the random initial weights:
at decay 0.999 the average still holds about 1/e of the initial weights after 1,000 steps, so
validation, which uses the average, reads near chance for the first epochs of a run while
training accuracy is already past 50% (9.4% after epoch 1 of configs/cnn.yaml; results/seed-cnn/NOTES.md). Here
the decay of update ``n`` is ``min(decay, (1 + n) / (10 + n))``, the usual warm-up: the average
follows the network closely at first and settles to the full horizon ``1 / (1 - decay)`` steps
once ``n`` reaches about ``10 / (1 - decay)``.
"""

from __future__ import annotations

from typing import Any

from jsonargparse.typing import restricted_number_type
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor


class WarmupEMA:
    """``AveragedModel``'s ``avg_fn``: one EMA step with the warmed-up decay (plain data, picklable)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, average: Tensor, current: Tensor, num_averaged: Tensor | int) -> Tensor:
        n = float(num_averaged)
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        return decay * average + (1.0 - decay) * current


# checked when the command line is parsed: [0, 1), 1 would never move from the first weights
Decay = restricted_number_type("Decay", float, [(">=", 0.0), ("<", 1.0)])


class EMAWithWarmup(WeightAveraging):
    """Validation, test and checkpoints use an EMA of the weights, updated every training step.

    Args:
        decay: the decay once warmed up; its horizon is ``1 / (1 - decay)`` steps.
        use_buffers: average BatchNorm's running statistics too, as Lightning's EMA does.
    """

    def __init__(self, decay: Decay = 0.999, use_buffers: bool = True, **kwargs: Any) -> None:
        decay = float(Decay(decay))  # the type is the rule: the parser applies it, and so does a Python caller here
        super().__init__(use_buffers=use_buffers, avg_fn=WarmupEMA(decay), **kwargs)
        self.decay = decay

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None  # every optimizer step, never per epoch
