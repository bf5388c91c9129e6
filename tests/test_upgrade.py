"""Run folders from older versions: ``cifar-lightning upgrade`` rewrites them once; every committed one parses now."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from cifar_lightning.tools.upgrade import files_of, upgrade_file, whole_pixel_shift
from harness import REPO, main_in_process

HEADLINE_RUNS = sorted(p.parent for p in (REPO / "results").glob("*/config.yaml"))
COMMITTED = sorted(path for run in (REPO / "results").glob("**/config.yaml") for path in files_of(run.parent))

OLD_CONFIG = """
model:
  flip_tta: true
  tta_shift: 0
trainer:
  callbacks:
  - class_path: cifar_lightning.averaging.EMAWithWarmup
    init_args: {decay: 0.999}
data:
  augmentation: {hflip_p: 0.5, shift: 0.0625}
optimizer: null
lr_scheduler: null
speed_monitor: {window_size: 50}
"""


@pytest.mark.parametrize("run", HEADLINE_RUNS, ids=lambda p: p.name)
def test_each_headline_run_config_parses_for_test(run, capsys):
    finished = main_in_process(["test", "--config", run / "config.yaml", "--print_config"], capsys)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert yaml.safe_load(finished.stdout)["model"]["network"]["class_path"].startswith("cifar_lightning.models.")


def test_every_committed_config_summary_and_checkpoint_is_current():
    assert len(COMMITTED) > 30
    assert [p for p in COMMITTED if upgrade_file(p, write=False)] == []


def test_an_old_run_folder_is_upgraded_once_and_keeps_its_originals(tmp_path, capsys):
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(OLD_CONFIG)
    (run / "summary.json").write_text(json.dumps({"test_flip_tta": True, "test_tta_shift": 2, "best_val_epoch": 50, "first_epoch_val_acc_ge_85": 45}))
    weights = {"network.w": torch.arange(4.0)}
    torch.save({"state_dict": weights, "hyper_parameters": {"flip_tta": True, "distillation": {"class_path": "cifar_lightning.distillation.Distillation"}}},
               run / "checkpoints" / "last.ckpt")
    # before: the one line names the retired option and the fix
    refused = main_in_process(["test", "--config", run / "config.yaml", "--print_config"], capsys)
    assert refused.returncode == 2 and "cifar-lightning upgrade" in refused.stderr.strip().splitlines()[-1]

    first = main_in_process(["upgrade", run], capsys)
    assert first.returncode == 0 and first.stdout.count("upgraded:") == 3
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == {"tta": "flip"} and "optimizer" not in config and "lr_scheduler" not in config
    assert config["data"]["augmentation"] == {"hflip_p": 0.5, "shift_px": 1}
    assert config["data"]["pipeline"] == "albumentations" and config["speed_monitor"] == {}  # what the run used; a retired option gone
    assert config["trainer"]["callbacks"][0]["class_path"] == "cifar_lightning.callbacks.EMAWithWarmup"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["test_views"], summary["best_val_epoch"], summary["first_epoch_val_acc_ge_85"]) == (6, 49, 44)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"] == {"distillation": {"class_path": "cifar_lightning.training.Distillation"}}
    assert torch.equal(checkpoint["state_dict"]["network.w"], weights["network.w"])
    # nothing is lost: each original beside its upgrade
    assert yaml.safe_load((run / "config.yaml.pre-upgrade").read_text())["model"]["flip_tta"] is True
    assert sorted(p.name for p in run.rglob("*.pre-upgrade")) == ["config.yaml.pre-upgrade", "last.ckpt.pre-upgrade", "summary.json.pre-upgrade"]

    again = main_in_process(["upgrade", run], capsys)
    assert again.returncode == 0 and "upgraded:" not in again.stdout
    assert main_in_process(["test", "--config", run / "config.yaml", "--print_config"], capsys).returncode == 0


@pytest.mark.parametrize(("fraction", "pixels"), [(0.0625, 1), (0.1, 3), (0.0, 0), (0.03, 0)])
def test_a_fractional_shift_becomes_the_largest_whole_pixel_shift_it_reached(fraction, pixels):
    assert whole_pixel_shift(fraction) == pixels


def test_a_missing_folder_is_one_line(refused, tmp_path):
    assert "does not exist" in refused("upgrade", str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_a_checkpoint_whose_data_state_lacks_statistics_says_to_upgrade_and_then_loads(finished_copy, monkeypatch, refused, capsys, real_data_dir, real_archive):
    from harness import TINY, data_args

    run = finished_copy / "lightning_logs" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["CIFAR10DataModule"] = {"shuffle_seed": checkpoint["CIFAR10DataModule"]["shuffle_seed"]}  # as older versions saved it
    torch.save(checkpoint, last)
    monkeypatch.chdir(finished_copy)
    validate = ["validate", "--config", str(run / "config.yaml"), *data_args(real_data_dir, real_archive), *TINY, f"--ckpt_path={last}"]
    assert "`cifar-lightning upgrade RUN_FOLDER` adds them" in refused(*validate)

    assert main_in_process(["upgrade", run], capsys).returncode == 0
    assert torch.load(last, weights_only=True)["CIFAR10DataModule"]["mean"] == checkpoint["preprocessing"]["mean"]
    assert main_in_process(validate, capsys).returncode == 0


def test_a_file_upgrade_cannot_read_is_one_line_and_a_second_upgrade_keeps_the_first_original(tmp_path, refused, capsys):
    (tmp_path / "config.yaml").write_text("model: [unclosed\n")
    assert "is not YAML" in refused("upgrade", str(tmp_path / "config.yaml"))
    (tmp_path / "config.yaml").write_text("model: {flip_tta: true}\n")
    (tmp_path / "config.yaml.pre-upgrade").write_text("an earlier upgrade's original\n")
    assert main_in_process(["upgrade", tmp_path / "config.yaml"], capsys).returncode == 0
    assert (tmp_path / "config.yaml.pre-upgrade").read_text() == "an earlier upgrade's original\n"
    assert "flip_tta" in (tmp_path / "config.yaml.pre-upgrade.1").read_text()
