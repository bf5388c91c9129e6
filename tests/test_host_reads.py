"""A steady-state training step reads nothing back from the device, except one value per logged metric at a logging step.

On a GPU each such read waits for every queued kernel. The CPU has no queue, so here the reads are
counted instead: every Python-level way a tensor's value reaches the host (``item``, ``tolist``,
``cpu``, ``bool``, ``float``, ``int``, and ``torch.unique``/``nonzero``, which a GPU can only answer
by waiting). Each shipped recipe runs with all its callbacks and the progress bar on, through the
real entry point; the count covers 50 steps in the middle of an epoch.
"""

from __future__ import annotations

import traceback
from collections import Counter

import pytest
import torch
from lightning.pytorch import Callback

from cifar_lightning.callbacks.progress import STEP_FIGURES
from cifar_lightning.lightning_cli import build
from harness import REPO, data_args, tiny_run

READS = ("item", "tolist", "cpu", "__bool__", "__float__", "__int__", "nonzero")
WAITING_FUNCTIONS = ("unique", "nonzero")
FIRST, STEPS = 10, 50  # the counted steps: batches FIRST .. FIRST + STEPS - 1 of the first epoch
LOG_EVERY = 20  # logging steps 20, 40 and 60 fall inside the window


class ReadCounter(Callback):
    """Counts host reads of tensors from the start of batch ``FIRST`` to the start of batch ``FIRST + STEPS``,
    by step, each with the line of project or Lightning code that made it."""

    def __init__(self, monkeypatch) -> None:
        self.counting = False
        self.where: Counter[str] = Counter()
        self.at_step: Counter[int] = Counter()  # reads per optimizer step
        self.step = 0
        self.logging_steps: list[int] = []
        for name in READS:
            self._wrap(monkeypatch, torch.Tensor, name)
        for name in WAITING_FUNCTIONS:
            self._wrap(monkeypatch, torch, name)

    def _wrap(self, monkeypatch, owner, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            if self.counting:
                self.counting = False  # reads inside the read (e.g. a repr) are not counted twice
                try:
                    frames = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
                    caller = frames[-1] if frames else None
                    self.where[
                        f"{name} at {caller.filename.split('site-packages/')[-1]}:{caller.lineno}" if caller else name
                    ] += 1
                    self.at_step[self.step] += 1
                finally:
                    self.counting = True
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.step = trainer.global_step + 1  # the step this batch makes (reads after its end count to it too)
        if trainer.current_epoch == 0 and batch_idx in (FIRST, FIRST + STEPS):
            self.counting = batch_idx == FIRST  # on from batch FIRST, off when the batch after the window starts
        if self.counting and self.step % trainer.log_every_n_steps == 0:
            self.logging_steps.append(self.step)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fast", "cnn", "hour"])
def test_a_steady_step_reads_back_nothing_between_logging_steps(
    recipe, tmp_path, monkeypatch, real_data_dir, real_archive
):
    monkeypatch.chdir(tmp_path)
    limits = [arg for arg in tiny_run(train_batches=FIRST + STEPS + 2) if "progress_bar" not in arg]
    cli = build(
        str(REPO / "configs" / f"{recipe}.yaml"),
        [
            *data_args(real_data_dir, real_archive),
            *limits,
            "--data.batch_size=16",
            f"--trainer.log_every_n_steps={LOG_EVERY}",
            "--data.pipeline=device",
        ],
    )
    counter = ReadCounter(monkeypatch)
    cli.trainer.callbacks.append(counter)
    logged: Counter[int] = Counter()  # metrics the logger received at each counted step
    log_metrics = cli.trainer.logger.log_metrics

    def recording(metrics, step=None):
        if counter.counting:
            logged[counter.step] += len(metrics)
        return log_metrics(metrics, step)

    monkeypatch.setattr(cli.trainer.logger, "log_metrics", recording)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert counter.logging_steps == [20, 40, 60], "the window should hold three logging steps"
    between = {step: n for step, n in counter.at_step.items() if step not in counter.logging_steps}
    assert not between, f"host reads between logging steps, by step {between}: {counter.where.most_common(8)}"
    # a logging step may read each metric it logs once, the two figures the progress bar shows, and the loss guard's flag
    for step in counter.logging_steps:
        allowed = logged[step] + len(STEP_FIGURES) + 1
        assert counter.at_step[step] <= allowed, (
            f"{counter.at_step[step]} reads at logging step {step} (allowed {allowed}): {counter.where.most_common(8)}"
        )
