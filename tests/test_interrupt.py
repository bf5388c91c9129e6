"""SIGTERM or Ctrl-C during fit: a non-zero exit, one line on how to resume, and a resumable checkpoint.

The signal goes to the whole process group, loader workers included, as a terminal's Ctrl-C,
``timeout`` or a batch scheduler sends it. One run meets both: SIGTERM in its second epoch,
then, resumed, Ctrl-C in its third; the last resume finishes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness import CONFIG, data_args, tiny_run

STEPS = 50  # an epoch of a second or more here: long enough for the signal to land mid-epoch
EPOCHS = 3


def stop_during_epoch(command: list[str], cwd: Path, last: Path, epoch: int, signum: int) -> tuple[int, str]:
    """Start the fit, send ``signum`` to its process group once ``last`` holds epoch ``epoch - 1``; (exit code, output)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # as in a terminal: a job started in the background (CI runners, `cmd &`) inherits SIGINT
        # ignored, and Python then never turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120

    def saved_epoch() -> int | None:
        try:
            return torch.load(last, weights_only=True)["epoch"]
        except (OSError, RuntimeError, EOFError, KeyError):
            return None  # not there yet, or being replaced

    while saved_epoch() != epoch - 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert saved_epoch() == epoch - 1, f"epoch {epoch - 1} never finished"
    time.sleep(0.2)  # into the next epoch
    os.killpg(process.pid, signum)  # the main process and its loader worker
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


@pytest.mark.process
def test_sigterm_then_ctrl_c_each_leave_a_resumable_run(tmp_path, real_data_dir, real_archive):
    args = [
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *tiny_run(epochs=EPOCHS, train_batches=STEPS, workers=1),
    ]
    command = [sys.executable, "-m", "cifar_lightning", *args]
    last = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    for epoch, signum, exit_code, resume in (
        (1, signal.SIGTERM, 128 + signal.SIGTERM, []),
        (2, signal.SIGINT, 1, ["--ckpt_path=last"]),
    ):
        code, output = stop_during_epoch([*command, *resume], tmp_path, last, epoch, signum)
        assert code == exit_code, output[-3000:]
        assert "Traceback" not in output
        hint = [line for line in output.splitlines() if line.startswith("stopped at epoch")]
        assert len(hint) == 1 and hint[0].endswith("--ckpt_path last")
        assert torch.load(last, weights_only=True)["epoch"] == epoch - 1  # the end of the last whole epoch

    # the hint as printed, in a shell like the user's: PATH need not hold this environment's Python
    resume = hint[0].split(" with: ", 1)[1]
    shell = subprocess.run(
        ["sh", "-c", resume], cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PATH": "/usr/bin:/bin"}
    )
    assert shell.returncode == 0, shell.stderr[-3000:]
    assert torch.load(last, weights_only=True)["global_step"] == EPOCHS * STEPS
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
