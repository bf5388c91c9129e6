"""On a GPU: a steady training step never waits for the device. ``torch.cuda.set_sync_debug_mode("error")``
makes every host-device synchronization raise; it is on for ``--steps`` steps after ``--warmup``, with
``log_every_n_steps`` above the window, so no logging step falls inside it.

    python -m benchmarks.sync_check --config configs/cnn.yaml --config configs/gpu.yaml [--data.archive ...]

Prints one line: the steps checked, or the first synchronization and where it came from. On a
machine without CUDA it says so and checks nothing (the CPU's own check is tests/test_host_reads.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch
from lightning.pytorch import Callback

from cifar_lightning.lightning_cli import build


class SyncsRaise(Callback):
    """Turns the sync debug mode to "error" from batch ``first`` to the start of batch ``first + steps``."""

    def __init__(self, first: int, steps: int) -> None:
        self.first, self.steps = first, steps
        self.checked = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.first:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        elif batch_idx == self.first + self.steps:
            torch.cuda.set_sync_debug_mode("default")
        if self.first <= batch_idx < self.first + self.steps:
            self.checked += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    args, overrides = parser.parse_known_args(argv)
    if not torch.cuda.is_available():
        print("sync check: no CUDA device here, nothing checked (tests/test_host_reads.py is the CPU's check)")
        return
    config, *more = args.config
    batches = args.warmup + args.steps + 1
    with tempfile.TemporaryDirectory(prefix="sync-check-") as logs:
        cli = build(
            config,
            [
                *(f"--config={c}" for c in more),
                *overrides,
                "--trainer.max_epochs=1",
                f"--trainer.limit_train_batches={batches}",
                "--trainer.limit_val_batches=0",
                "--trainer.num_sanity_val_steps=0",
                f"--trainer.log_every_n_steps={batches + 100}",
                "--trainer.enable_progress_bar=false",
                f"--trainer.logger.init_args.save_dir={logs}",
            ],
        )
        check = SyncsRaise(args.warmup, args.steps)
        cli.trainer.callbacks.append(check)
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        except RuntimeError as err:
            torch.cuda.set_sync_debug_mode("default")
            print(f"sync check: FAILED after {check.checked} steps: {' '.join(str(err).split())[:300]}")
            sys.exit(1)
    print(f"sync check: {check.checked} steady steps of {' + '.join(args.config)}, no host-device synchronization")


if __name__ == "__main__":
    main()
