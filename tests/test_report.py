"""The report turns a real (short) run folder into metrics.csv, summary.json and curves.png."""

from __future__ import annotations

import csv
import json

import pytest

from cifar_lightning.lightning_cli import run_cli
from cifar_lightning.tools.report import main as report_main
from cifar_lightning.tools.report import read_test_views
from harness import CONFIG, data_args, tiny_run

SHORT = [
    *tiny_run(epochs=2, train_batches=8, workers=1, batch_size=64, eval_batch_size=256),
    "--trainer.log_every_n_steps=1",  # so the learning rate and images/s are logged within 8 steps
]


@pytest.mark.slow
def test_report_on_a_short_real_run(tmp_path, monkeypatch, real_data_dir, real_archive, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["--config", CONFIG, *data_args(real_data_dir, real_archive), *SHORT]
    run_cli(["fit", *base])
    run_dir = tmp_path / "lightning_logs" / "version_0"
    tested = run_cli(["test", *base, f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    test_acc = float(tested.trainer.callback_metrics["test/acc"])
    assert (run_dir / "config-test.yaml").is_file()  # the evaluation landed in the run's own folder

    out = tmp_path / "report"
    report_main([str(run_dir), "--out", str(out)])

    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for row in rows:
        for column in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "wall_time_s", "epoch_time_s"):
            assert float(row[column]) >= 0, column
    assert float(rows[1]["wall_time_s"]) > float(rows[0]["wall_time_s"]) > 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"] == 150_738 and summary["epochs"] == 2
    assert summary["test_acc"] == pytest.approx(test_acc)
    assert summary["best_val_acc"] == max(float(r["val_acc"]) for r in rows)
    assert summary["commit"] and summary["torch"] and summary["lightning"]
    assert summary["data"]["archive"] == str(real_archive)
    assert summary["train_images_per_sec"] > 0 and summary["test_views"] == 1
    assert summary["test_acc_single_view"] == summary["test_acc"]
    per_class = summary["test_per_class"]
    assert per_class["classes"][0] == "airplane" and len(per_class["matrix"]) == 10
    assert sum(map(sum, per_class["matrix"])) == 512  # two test batches of 256

    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    assert "test_acc" in capsys.readouterr().out


def test_test_views_come_from_what_the_test_logged():
    assert read_test_views({"test/views": [(0.0, 3, 6.0)]}) == 6
    assert read_test_views({"test/views": [(0.0, 3, 1.0)]}) == 1
    assert read_test_views({"test/acc": [(0.0, 3, 0.5)]}) is None  # not tested: nothing is guessed


@pytest.mark.slow
def test_report_on_a_run_without_validation(tmp_path, monkeypatch, real_data_dir, real_archive):
    # data.val_size 0: the final fit of a chosen recipe on all 50,000 training images
    monkeypatch.chdir(tmp_path)
    args = [
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *SHORT,
        "--trainer.max_epochs=1",
        "--data.val_size=0",
    ]
    fitted = run_cli(["fit", *args])
    assert fitted.trainer.num_training_batches == 8 and not any(
        k.startswith("val/") for k in fitted.trainer.callback_metrics
    )
    run_dir = tmp_path / "lightning_logs" / "version_0"
    report_main([str(run_dir), "--out", str(tmp_path / "report")])
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["best_val_acc"] is None and summary["first_epoch_val_acc_ge_85"] is None
    assert (tmp_path / "report" / "curves.png").stat().st_size > 10_000
