"""A fit killed mid-epoch and resumed with ``--ckpt_path last`` matches one that never stopped, bit for bit.

The killed fit is a process of its own (SIGKILL); the straight fit and the resume run the same
entry point in this process. Each data pipeline is tried (albumentations in a loader worker, and the
device pipeline), with configs/cnn.yaml's EMA callback and a fixed seed, and a network that draws
from torch's global RNG (dropout). What makes it exact:
epoch-seeded shuffling and augmentation (``data/sampling.py``), the global RNG states in the
checkpoint (``RandomState``; this test fails without them), and the optimizer, OneCycle and EMA
states Lightning saves.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import torch

from cifar_lightning.lightning_cli import run_cli
from cifar_lightning.tools.report import read_scalars
from harness import CONFIG, REPO, assert_same, cli, data_args, tiny_run

EPOCHS, STEPS = 3, 6
ARGS = [
    *tiny_run(epochs=EPOCHS, train_batches=STEPS),
    "--trainer.enable_model_summary=false",
    "--trainer.log_every_n_steps=1",  # compare every step
]
COMPARED_TAGS = ["train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "lr"]


def fit_in_a_process(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cwd.mkdir(exist_ok=True)
    return cli("fit", "--config", CONFIG, *args, cwd=cwd)


def fit_here(cwd: Path, monkeypatch, *args: str) -> None:
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    run_cli(["fit", "--config", CONFIG, *args])


def scalars_from_epoch(run_dir: Path, first_epoch: int) -> dict[str, list[tuple[int, float]]]:
    scalars = read_scalars(run_dir)
    first_step = first_epoch * STEPS
    tags = [tag for tag in scalars if tag in COMPARED_TAGS]
    assert set(COMPARED_TAGS) <= set(tags)
    return {tag: [(step, value) for _, step, value in scalars[tag] if step >= first_step] for tag in tags}


# the albumentations pipeline in a loader worker; the device pipeline in the training process
PIPELINES = {
    "albumentations": ["--data.pipeline=albumentations", "--data.num_workers=1"],
    "device": ["--data.pipeline=device"],
}


# TensorBoard's event files, or a CSVLogger's metrics.csv (which the resumed fit continues)
LOGGERS = {"tensorboard": [], "csv": ["--config", str(REPO / "configs" / "logger" / "csv.yaml")]}


@pytest.mark.process
@pytest.mark.parametrize(
    # each pipeline once and each logger once (the DDP test resumes the device pipeline with TensorBoard too)
    ("pipeline", "logger"),
    [("albumentations", "tensorboard"), ("device", "csv")],
)
def test_sigkill_mid_epoch_then_resume_equals_never_stopping(
    pipeline, logger, tmp_path, real_data_dir, real_archive, monkeypatch
):
    args = [
        *LOGGERS[logger],
        *data_args(real_data_dir, real_archive),
        *ARGS,
        *PIPELINES[pipeline],
        "--model.network=helpers.DropoutNet",
    ]
    kill_resume_and_compare(args, tmp_path, monkeypatch)


# airbench's techniques keep state of their own: the fitted stem, and the side schedule, the killed
# epoch at a side of its own
TRICKS = [
    "--model.network=cifar_lightning.models.CompactNet",
    "--model.network.stem=whiten",
    "--model.network.bn_train_scale=false",
    "--trainer.callbacks+=cifar_lightning.callbacks.FitPatchWhitening",
    "--trainer.callbacks.images=64",
    "--trainer.callbacks.bias_epochs=2",
    "--data.augmentation.hflip_p=0.5",
    "--data.augmentation.epoch_sides=[16,24]",
]


@pytest.mark.process
def test_a_resumed_fit_with_airbenchs_techniques_equals_never_stopping(
    tmp_path, real_data_dir, real_archive, monkeypatch
):
    args = [*data_args(real_data_dir, real_archive), *ARGS, *PIPELINES["device"], *TRICKS]
    kill_resume_and_compare(args, tmp_path, monkeypatch)


def kill_resume_and_compare(args: list[str], tmp_path: Path, monkeypatch) -> None:
    fit_here(tmp_path / "straight", monkeypatch, *args)

    killed = fit_in_a_process(
        tmp_path / "killed",
        *args,
        "--trainer.callbacks+=helpers.KillAt",
        "--trainer.callbacks.epoch=1",
        "--trainer.callbacks.batch=3",
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = tmp_path / "killed/lightning_logs/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the end of epoch k-1 = 0

    fit_here(tmp_path / "killed", monkeypatch, *args, "--ckpt_path=last")

    a = torch.load(tmp_path / "straight/lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (EPOCHS - 1, EPOCHS * STEPS)
    for key in ("state_dict", "optimizer_states", "lr_schedulers"):
        assert_same(a[key], b[key], key)

    # callback states (EMA weights, RNG states), but not ModelCheckpoint's file bookkeeping,
    # whose paths name each run's own folder
    def training_state(ckpt):
        return {k: v for k, v in ckpt["callbacks"].items() if not k.startswith("ModelCheckpoint")}

    assert_same(training_state(a), training_state(b), "callbacks")
    # every metric logged from the interrupted epoch on, step by step
    assert scalars_from_epoch(tmp_path / "straight/lightning_logs/version_0", 1) == scalars_from_epoch(
        tmp_path / "killed/lightning_logs/version_0", 1
    )


@pytest.mark.process
def test_a_kill_during_a_save_keeps_the_previous_last_checkpoint(tmp_path, real_data_dir, real_archive, monkeypatch):
    # save_top_k=0: the only file written at the end of epoch 1 is last.ckpt, so the kill lands in its save
    args = [*data_args(real_data_dir, real_archive), *ARGS, "--checkpoint.save_top_k=0", *PIPELINES["device"]]
    died = fit_in_a_process(
        tmp_path, *args, "--trainer.callbacks+=helpers.DieDuringSave", "--trainer.callbacks.epoch=1"
    )
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    last = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # complete, and still the previous epoch's

    fit_here(tmp_path, monkeypatch, *args, "--ckpt_path=last")
    assert torch.load(last, weights_only=True)["global_step"] == EPOCHS * STEPS
