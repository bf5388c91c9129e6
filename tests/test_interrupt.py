"""Ctrl-C or SIGTERM during fit: a non-zero exit, one line on how to resume, and a resumable checkpoint.

The signal goes to the whole process group, loader workers included, as a terminal's Ctrl-C,
``timeout`` or a batch scheduler sends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from harness import CONFIG, data_args, tiny_run

STEPS = 150  # about 4 s an epoch here: long enough for the signal to land mid-epoch
ARGS = tiny_run(epochs=3, train_batches=STEPS, workers=1)


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 1)])
def test_a_stop_signal_leaves_a_resumable_run(tmp_path, real_data_dir, real_archive, signum, exit_code):
    command = [sys.executable, "-m", "cifar_lightning", "fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *ARGS]
    last = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # as in a terminal: a job started in the background (CI runners, `cmd &`) inherits SIGINT
        # ignored, and Python then never turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), "the first epoch never finished"
    per_epoch = torch.load(last, weights_only=True)["global_step"]  # STEPS, or fewer on the shipped subset
    time.sleep(0.2)  # into the second epoch
    os.killpg(process.pid, signum)  # the main process and its loader worker
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr[-3000:]
    assert "Traceback" not in stderr
    hint = [line for line in (stdout + stderr).splitlines() if line.startswith("stopped at epoch")]
    assert len(hint) == 1 and hint[0].endswith("--ckpt_path last")
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the end of the first epoch

    resumed = subprocess.run([*command, "--ckpt_path=last"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == 3 * per_epoch
