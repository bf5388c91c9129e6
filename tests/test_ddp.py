"""configs/ddp.yaml on this CPU: two processes (gloo) with a recipe's EMA and whitening stem kept, gathered
metrics, one writer, an exact resume after both processes are killed, predictions in order."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import torch

from cifar_lightning.callbacks.ema import update_average, warmed_up_decay
from cifar_lightning.tools.report import read_scalars
from harness import REPO, assert_same, cli, data_args

DDP = [
    "--config",
    str(REPO / "configs" / "ddp.yaml"),
    "--trainer.accelerator=cpu",
    "--trainer.devices=2",
    "--trainer.sync_batchnorm=false",  # PyTorch's SyncBatchNorm is GPU-only
    "--data.num_workers=0",
    "--trainer.enable_progress_bar=false",
]
EPOCHS, STEPS = 2, 3
# configs/hour.yaml: EMA and the whitening stem, as shipped but for the tiny limits and fp32
HOUR = [
    "--config",
    str(REPO / "configs" / "hour.yaml"),
    *DDP,
    "--trainer.callbacks.images=64",  # the stem's sample: FitPatchWhitening is the recipe's last callback
    f"--trainer.max_epochs={EPOCHS}",
    f"--trainer.limit_train_batches={STEPS}",
    "--trainer.limit_val_batches=2",
    "--trainer.precision=32-true",
    "--model.tta=none",
    "--data.batch_size=32",
    "--data.eval_batch_size=64",
    "--augmentation_preview.draws=0",
]


def fit(cwd: Path, *args: str):
    cwd.mkdir(exist_ok=True)
    return cli("fit", *HOUR, *args, cwd=cwd)


@pytest.mark.process
@pytest.mark.xdist_group("ddp")  # two DDP launches at once would race for a free port
def test_ddp_keeps_the_recipes_ema_and_stem_resumes_exactly_and_predicts_in_order(
    tmp_path, real_data_dir, real_archive
):
    data = data_args(real_data_dir, real_archive)
    recorders = [
        "--trainer.callbacks+=helpers.RecordLocalAccuracy",
        f"--trainer.callbacks.folder={tmp_path / 'ranks'}",
        "--trainer.callbacks+=helpers.RecordWeights",
        f"--trainer.callbacks.folder={tmp_path / 'weights'}",
    ]
    straight = fit(tmp_path / "straight", *data, *recorders)
    assert straight.returncode == 0, straight.stderr[-3000:]

    # the stem is fitted once, from rank 0's images, and is the same on both processes
    records = [torch.load(tmp_path / "weights" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(records[0]["stem"], records[1]["stem"]) and records[0]["stem"].abs().sum() > 0
    # the weights are the same on both processes at every step, and so is their average
    assert len(records[0]["steps"]) == EPOCHS * STEPS
    weights = [k for k in records[0]["average"] if "running" not in k and "num_batches" not in k]
    for step0, step1 in zip(records[0]["steps"], records[1]["steps"]):
        assert all(torch.equal(step0[k], step1[k]) for k in weights)
    assert all(torch.equal(records[0]["average"][k], records[1]["average"][k]) for k in weights)

    # the average is the EMA update applied to rank 0's sequence of weights (its own BatchNorm statistics too)
    def as_module(state: dict) -> torch.nn.Module:
        module = torch.nn.Module()
        for i, value in enumerate(state.values()):
            module.register_buffer(f"t{i}", value)
        return module

    replayed = {k: v.clone() for k, v in records[0]["steps"][0].items()}
    for n, step in enumerate(records[0]["steps"]):
        update_average(as_module(replayed), as_module(step), warmed_up_decay(records[0]["decay"], n))
    for key, value in records[0]["average"].items():
        torch.testing.assert_close(replayed[key], value, rtol=1e-5, atol=1e-6, msg=key)

    # each process validated its own half, and val/acc is the accuracy of both halves
    ranks = [json.loads((tmp_path / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["total"] == ranks[1]["total"] == 128 and ranks[0]["first_labels"] != ranks[1]["first_labels"]
    gathered = sum(r["correct"] for r in ranks) / sum(r["total"] for r in ranks)
    run_dir = tmp_path / "straight" / "lightning_logs" / "version_0"
    assert read_scalars(run_dir)["val/acc"][-1][2] == pytest.approx(gathered, abs=1e-6)
    # rank 0 alone wrote: one run folder, one event file, one set of checkpoints
    assert [p.name for p in (tmp_path / "straight" / "lightning_logs").iterdir()] == ["version_0"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir())[-1] == "last.ckpt"

    # both processes SIGKILLed in the middle of the second epoch; the resumed fit ends where the straight one did
    killed = fit(tmp_path / "killed", *data, "--trainer.callbacks+=helpers.KillAt", "--trainer.callbacks.epoch=1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = fit(tmp_path / "killed", *data, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "killed/lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (EPOCHS - 1, EPOCHS * STEPS)
    for key in ("state_dict", "optimizer_states", "lr_schedulers"):
        assert_same(a[key], b[key], key)
    assert_same(
        *({k: v for k, v in c["callbacks"].items() if not k.startswith("ModelCheckpoint")} for c in (a, b)), "callbacks"
    )

    # predict: every test image once, in index order, from the two processes
    out = tmp_path / "predictions.csv"
    predicted = cli(
        "predict",
        *HOUR,
        *data,
        "--trainer.limit_predict_batches=2",
        f"--prediction_writer.output={out}",
        f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        cwd=tmp_path / "straight",
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    with out.open() as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert paths == [f"test[{i}]" for i in range(256)]  # two processes, two batches of 64 each
