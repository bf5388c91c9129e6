"""Which training steps are logging steps: the only ones where a callback may read a value back from the device."""

from __future__ import annotations

from lightning.pytorch import Trainer


def is_logging_step(trainer: Trainer) -> bool:
    """Whether the step that just ended is one where Lightning logs step metrics: the only reads from the device."""
    return trainer.log_every_n_steps > 0 and trainer.global_step % trainer.log_every_n_steps == 0
