"""TensorBoard shows the run: tags, hparams, figures, read back with tensorboard's own EventAccumulator."""

from __future__ import annotations

import pytest

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from cifar_lightning.lightning_cli import run_cli
from harness import CONFIG, TINY, data_args

SCALARS = ["train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "lr", "train/device/samples_per_sec",
           "time/epoch_s", "hp/best_val_acc", "hp/final_val_acc", "hp/test_acc", "test/acc"]
IMAGES = ["test/confusion_matrix", "test/misclassified"]


@pytest.mark.slow
def test_fit_and_test_write_the_tags_hparams_and_figures(tmp_path, monkeypatch, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    common = [*data_args(real_data_dir, real_archive), *TINY]
    run_cli(["fit", "--config", CONFIG, *common, "--trainer.log_every_n_steps=1"])
    run_dir = tmp_path / "lightning_logs" / "version_0"
    run_cli(["test", "--config", str(run_dir / "config.yaml"), *common, "--ckpt_path", str(run_dir / "checkpoints/last.ckpt")])

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert set(SCALARS) <= set(tags["scalars"]), set(SCALARS) - set(tags["scalars"])
    assert set(IMAGES) <= set(tags["images"])
    assert all(events.Images(tag)[0].width > 300 for tag in IMAGES)  # a real picture, not a placeholder

    hparams = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"hp/best_val_acc", "hp/final_val_acc", "hp/test_acc"}
    session = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["model.optimizer.init_args.lr"].number_value == 0.1
    assert session.hparams["data.batch_size"].number_value == 32
    test_acc = events.Scalars("hp/test_acc")[-1].value
    assert abs(test_acc - events.Scalars("test/acc")[-1].value) < 1e-6
    assert json.loads((run_dir / "run.json").read_text())["parameters"] == 150_738
