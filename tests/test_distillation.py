"""Knowledge distillation: the blended loss, and a fit through the real entry point with a real teacher."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cifar_lightning.errors import CheckpointError
from cifar_lightning.lightning_cli import run_cli
from cifar_lightning.training.distillation import Distillation
from harness import CONFIG, REPO, TINY, data_args

TEACHER = {"class_path": "cifar_lightning.models.ResidualCompactNet", "init_args": {"widths": [32, 48, 64]}}


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory, real_data_dir, real_archive):
    """A ResidualCompactNet trained for three batches here: a teacher of the right shape, nothing more."""
    work = tmp_path_factory.mktemp("teacher")
    previous = os.getcwd()
    os.chdir(work)
    try:
        run_cli(
            [
                "fit",
                "--config",
                CONFIG,
                *data_args(real_data_dir, real_archive),
                *TINY,
                f"--model.network={json.dumps(TEACHER)}",
            ]
        )
    finally:
        os.chdir(previous)
    return work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def distillation_arg(checkpoint, teacher: dict = TEACHER) -> str:
    spec = {
        "class_path": "cifar_lightning.training.distillation.Distillation",
        "init_args": {"teacher": teacher, "checkpoint": str(checkpoint)},
    }
    return f"--model.distillation={json.dumps(spec)}"


def test_loss_blends_label_loss_with_the_teachers_softened_predictions():
    torch.manual_seed(0)
    teacher = nn.Linear(6, 10)
    images = torch.randn(8, 6)
    labels = torch.randint(0, 10, (8,))
    distill = Distillation(teacher, "unused.ckpt", weight=0.75, temperature=2.0, bf16=False)
    same = teacher(images).detach()
    label_loss = F.cross_entropy(same, labels)
    # a student that matches the teacher pays only its share of the label loss
    torch.testing.assert_close(distill.loss(same, label_loss, images), 0.25 * label_loss)
    other = same + torch.randn_like(same)
    expected_kl = F.kl_div(F.log_softmax(other / 2, 1), F.softmax(same / 2, 1), reduction="batchmean")
    torch.testing.assert_close(distill.loss(other, label_loss, images), 0.25 * label_loss + 0.75 * 4 * expected_kl)
    with pytest.raises(ValueError, match="1.5 does not conform"):
        Distillation(teacher, "unused.ckpt", weight=1.5)
    with pytest.raises(ValueError, match="0.0 does not conform"):
        Distillation(teacher, "unused.ckpt", temperature=0.0)


@pytest.mark.slow
def test_fit_distils_from_a_frozen_teacher_kept_out_of_the_checkpoint(
    tmp_path, real_data_dir, real_archive, monkeypatch, teacher_ckpt
):
    monkeypatch.chdir(tmp_path)
    # the overlay config as the README runs it, the teacher named on the command line
    overlay = [
        "--config",
        str(REPO / "configs" / "distill.yaml"),
        f"--model.distillation.init_args.checkpoint={teacher_ckpt}",
    ]
    result = run_cli(["fit", "--config", CONFIG, *overlay, *data_args(real_data_dir, real_archive), *TINY])
    teacher = result.model.distillation.teacher
    saved = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    # loaded from the checkpoint, and neither trained nor its batch-norm statistics updated
    for name, value in teacher.state_dict().items():
        torch.testing.assert_close(value, saved[f"network.{name}"], msg=name)
    assert not teacher.training and result.trainer.global_step == 3
    student = torch.load(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(key.startswith("network.") for key in student["state_dict"]) and student["network_class"].endswith(
        "SeedNet"
    )


@pytest.mark.slow
def test_a_teacher_checkpoint_of_another_network_is_refused(
    tmp_path, real_data_dir, real_archive, monkeypatch, teacher_ckpt
):
    monkeypatch.chdir(tmp_path)
    other = {"class_path": "cifar_lightning.models.CompactNet"}
    with pytest.raises(CheckpointError, match="do not fit the model.distillation.teacher"):
        run_cli(
            [
                "fit",
                "--config",
                CONFIG,
                *data_args(real_data_dir, real_archive),
                *TINY,
                distillation_arg(teacher_ckpt, other),
            ]
        )
    with pytest.raises(CheckpointError, match="does not exist"):
        run_cli(
            [
                "fit",
                "--config",
                CONFIG,
                *data_args(real_data_dir, real_archive),
                *TINY,
                distillation_arg(tmp_path / "no.ckpt"),
            ]
        )


def test_distill_yaml_asks_for_the_teacher_on_the_command_line(tmp_path, monkeypatch, refused):
    monkeypatch.chdir(tmp_path)
    assert "checkpoint" in refused("fit", "--config", CONFIG, "--config", str(REPO / "configs" / "distill.yaml"))
