"""Which training steps are logging steps: the only ones where a callback may read a value back from the device."""

from __future__ import annotations

from lightning.pytorch import Trainer


def is_logging_step(trainer: Trainer) -> bool:
    """Whether the step that just ended (``on_train_batch_end``) is one where Lightning writes step metrics to the
    loggers: every ``log_every_n_steps``-th optimizer step. A read from a GPU waits for its queue, so the
    callbacks here read only then (and at epoch ends and checkpoint saves)."""
    return trainer.log_every_n_steps > 0 and trainer.global_step % trainer.log_every_n_steps == 0
