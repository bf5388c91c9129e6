"""The yardstick beside every timed run: recorded in run.json, and the report's minutes scaled by it."""

from __future__ import annotations

import json
import time

import pytest

from cifar_lightning.callbacks import run_record
from cifar_lightning.runs import reference_rate
from cifar_lightning.runs.reference_rate import YARDSTICK_REFERENCE, scaled_minutes
from cifar_lightning.tools.report import write_report
from cifar_lightning.lightning_cli import run_cli
from harness import CONFIG, data_args, tiny_run


def test_scaled_minutes_follow_the_yardstick(monkeypatch):
    monkeypatch.setitem(reference_rate.YARDSTICK_REFERENCE, "cpu", 1000.0)
    assert scaled_minutes(10.0, 500.0, "cpu") == 5.0  # a machine at half the reference's speed: half the minutes there
    assert scaled_minutes(10.0, 2000.0, "cpu") == 20.0
    assert scaled_minutes(10.0, None, "cpu") is None and scaled_minutes(10.0, 500.0, "cuda") is None  # no committed value there


@pytest.mark.slow
def test_a_timed_fit_records_the_yardstick_and_the_report_scales_its_minutes(tmp_path, monkeypatch, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    timed_until = []

    def train_step_rate(*args):  # the second of the two timings; it ends before the fit's clock starts
        rate = reference_rate.train_step_rate(*args)
        timed_until.append(time.time())
        return rate

    monkeypatch.setattr(run_record, "train_step_rate", train_step_rate)
    run_cli(["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *tiny_run(), "--run_info.reference_seconds=0.3"])
    run_dir = tmp_path / "lightning_logs" / "version_0"
    info = json.loads((run_dir / "run.json").read_text())
    assert len(timed_until) == 1 and info["started"] >= timed_until[0]  # the timings are not the fit's minutes
    assert info["reference"]["images_per_s"] > 0 and info["yardstick"]["images_per_s"] > 0
    assert info["yardstick"]["reference_images_per_s"] == YARDSTICK_REFERENCE["cpu"]
    monkeypatch.setitem(reference_rate.YARDSTICK_REFERENCE, "cpu", 2 * info["yardstick"]["images_per_s"])
    summary = write_report(run_dir)
    assert summary["fit_minutes_scaled"] == pytest.approx(summary["fit_minutes"] / 2)
    assert summary["yardstick_images_per_s"] == info["yardstick"]["images_per_s"]
