"""configs/ddp.yaml on this CPU: two processes (gloo), gathered metrics, one writer, predictions in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar_lightning.tools.report import read_scalars
from harness import CONFIG, cli, data_args

DDP_CONFIG = str(Path(CONFIG).with_name("ddp.yaml"))


@pytest.mark.process
@pytest.mark.xdist_group("ddp")  # two DDP launches at once would race for a free port
def test_ddp_fit_and_predict_on_two_cpu_processes(tmp_path, real_data_dir, real_archive):
    result = cli(
        "fit",
        "--config",
        CONFIG,
        "--config",
        DDP_CONFIG,
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.sync_batchnorm=false",
        *data_args(real_data_dir, real_archive),
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        "--data.num_workers=0",
        "--data.batch_size=32",
        "--data.eval_batch_size=64",
        "--trainer.callbacks+=helpers.RecordLocalAccuracy",
        f"--trainer.callbacks.folder={tmp_path / 'ranks'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # each process validated its own half (DistributedSampler), and val/acc is the accuracy of both halves
    assert ranks[0]["total"] == ranks[1]["total"] == 128 and ranks[0]["first_labels"] != ranks[1]["first_labels"]
    gathered = sum(r["correct"] for r in ranks) / sum(r["total"] for r in ranks)
    run_dir = tmp_path / "lightning_logs" / "version_0"
    logged = read_scalars(run_dir)["val/acc"][-1][2]
    assert logged == pytest.approx(gathered, abs=1e-6)

    # rank 0 alone wrote: one run folder, one event file, one set of checkpoints
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir())[-1] == "last.ckpt"
    assert len(list((run_dir / "checkpoints").iterdir())) == 2

    # predict: every test image once, in index order, from the two processes
    out = tmp_path / "predictions.csv"
    result = cli(
        "predict",
        "--config",
        CONFIG,
        "--config",
        DDP_CONFIG,
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.sync_batchnorm=false",
        *data_args(real_data_dir, real_archive),
        "--trainer.limit_predict_batches=2",
        "--trainer.enable_progress_bar=false",
        "--data.num_workers=0",
        "--data.eval_batch_size=64",
        f"--prediction_writer.output={out}",
        f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import csv

    with out.open() as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    # two processes, two batches of 64 each: the first 256 test images, each once, in order
    assert paths == [f"test[{i}]" for i in range(256)]
