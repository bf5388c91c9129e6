"""A stopped fit resumes with ``--ckpt_path last`` where it stopped: epoch, optimizer, OneCycle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cifar_lightning.lightning_cli import run_cli
from harness import CONFIG, data_args, tiny_run

pytestmark = pytest.mark.slow  # fits: `make test-fast` leaves them out

STEPS_PER_EPOCH = 4
SMALL = tiny_run(epochs=2, train_batches=STEPS_PER_EPOCH)


def test_resume_continues_epoch_optimizer_and_schedule(tmp_path, monkeypatch, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    base = ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *SMALL]
    first = run_cli([*base, "--trainer.callbacks+=helpers.StopAfterEpochs", "--trainer.callbacks.epochs=1"])
    assert first.trainer.current_epoch == 1 and first.trainer.global_step == STEPS_PER_EPOCH
    stopped_lr = first.trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0]
    last = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    saved = torch.load(last, weights_only=True)

    resumed = run_cli([*base, "--trainer.callbacks+=helpers.RecordTrainStart", "--ckpt_path=last"])
    start = resumed.trainer.callbacks[[type(c).__name__ for c in resumed.trainer.callbacks].index("RecordTrainStart")]
    # it continues at the second epoch, one epoch of steps into OneCycle, at the rate where it stopped
    assert (start.epoch, start.global_step, start.scheduler_steps) == (1, STEPS_PER_EPOCH, STEPS_PER_EPOCH)
    assert start.lr == stopped_lr
    # SGD's momentum buffers are the saved ones, not fresh zeros
    restored = start.optimizer_state["state"]
    assert restored and all(
        torch.equal(restored[k]["momentum_buffer"], v["momentum_buffer"])
        for k, v in saved["optimizer_states"][0]["state"].items()
    )
    # and it finishes the schedule it began: 2 epochs of steps in all, logging into the same run folder
    scheduler = resumed.trainer.lr_scheduler_configs[0].scheduler
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 2 * STEPS_PER_EPOCH
    assert scheduler.last_epoch == scheduler.total_steps == 2 * STEPS_PER_EPOCH
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


def test_resume_with_another_max_epochs_is_a_clear_error(tmp_path, monkeypatch, refused, real_data_dir, real_archive):
    import shutil

    monkeypatch.chdir(tmp_path)
    base = ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *SMALL]
    run_cli([*base, "--trainer.callbacks+=helpers.StopAfterEpochs", "--trainer.callbacks.epochs=1"])
    longer = [arg for arg in base if not arg.startswith("--trainer.max_epochs")] + ["--trainer.max_epochs=3"]
    # inside its run folder: the run's own config.yaml says how it trains, so the resume is refused by key
    assert "these training settings differ from its config.yaml: trainer.max_epochs" in refused(
        *longer, "--ckpt_path=last"
    )
    # a checkpoint copied out of its run has no record beside it: OneCycle's own length is the check
    (loose,) = tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt")
    shutil.copy(loose, tmp_path / "loose.ckpt")
    assert "OneCycle schedule is 8 steps long but this config gives 12" in refused(
        *longer, f"--ckpt_path={tmp_path / 'loose.ckpt'}"
    )


def test_a_new_fit_from_a_runs_config_gets_a_folder_of_its_own(tmp_path, monkeypatch, real_data_dir, real_archive):
    """A run's config.yaml names its folder (the logger's version); training from it again keeps that run whole."""
    monkeypatch.chdir(tmp_path)
    args = [*data_args(real_data_dir, real_archive), *tiny_run(epochs=1), "--model.network=helpers.TinyNet"]
    run_cli(["fit", "--config", CONFIG, *args])
    first = tmp_path / "lightning_logs" / "version_0"
    kept = {p.name: p.read_bytes() for p in (first / "checkpoints").iterdir()}
    again = run_cli(["fit", "--config", str(first / "config.yaml"), *args])
    assert Path(again.trainer.log_dir).resolve() == tmp_path / "lightning_logs" / "version_1"
    assert {p.name: p.read_bytes() for p in (first / "checkpoints").iterdir()} == kept


def test_a_new_fit_never_writes_over_another_runs_checkpoints(
    tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    """A checkpoint folder that the config names is one folder for every fit: the next would rewrite last.ckpt there."""
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *tiny_run(epochs=1),
        "--model.network=helpers.TinyNet",
        "--last_checkpoint.dirpath=kept",
        "--checkpoint.dirpath=kept",
    ]
    run_cli(args)
    kept = {p.name: p.read_bytes() for p in (tmp_path / "kept").iterdir()}
    assert "last.ckpt" in kept
    line = refused(*args)
    assert "kept holds another run's checkpoints" in line
    assert "resume that run with --ckpt_path kept/last.ckpt, or pass another --checkpoint.dirpath" in line
    assert {p.name: p.read_bytes() for p in (tmp_path / "kept").iterdir()} == kept


def test_a_fit_without_a_logger_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    monkeypatch.chdir(tmp_path)
    line = refused(
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *tiny_run(epochs=1),
        "--trainer.logger=false",
    )
    assert (
        line.startswith("error: a fit needs a logger")
        and "--trainer.logger lightning.pytorch.loggers.CSVLogger" in line
    )
    assert list(tmp_path.iterdir()) == []
