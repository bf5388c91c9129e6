"""The real entry point, driven with tiny limits on the real archive."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from cifar_lightning.lightning_cli import run_cli
from harness import CIFAR10_CLASSES, CONFIG, REPO, SUBSET_CACHE, TINY, data_args, main_in_process, one_line_error


def test_fit_writes_config_checkpoints_and_events(finished_run):
    run_dir = finished_run / "lightning_logs" / "version_0"
    assert (run_dir / "config.yaml").is_file()
    assert "SeedNet" in (run_dir / "config.yaml").read_text()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run_dir / "checkpoints").glob("epoch00[01]-val_acc*.ckpt"))) == 1  # the best of the 2 epochs
    assert list(run_dir.glob("events.out.tfevents.*"))
    log = finished_run.joinpath("fit.log").read_text()
    # the closing summary: best val accuracy and its epoch, wall time, checkpoints, what to run next
    assert re.search(r"fit finished: 2 epochs, 6 steps, [0-9.]+ min", log)
    assert re.search(r"best val/acc = 0\.\d{4} at epoch ([01]): \S+epoch00\1-val_acc", log)
    assert "last checkpoint: ./lightning_logs/version_0/checkpoints/last.ckpt" in log
    assert "tensorboard --logdir lightning_logs" in log


@pytest.mark.slow
def test_progress_bar_shows_loss_accuracy_and_images_per_second(tmp_path, real_data_dir, real_archive, monkeypatch):
    from lightning.pytorch.callbacks import RichProgressBar

    monkeypatch.chdir(tmp_path)
    args = [arg for arg in TINY if "enable_progress_bar" not in arg]
    trainer = run_cli(["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *args]).trainer
    assert isinstance(trainer.progress_bar_callback, RichProgressBar)
    shown = trainer.progress_bar_callback.get_metrics(trainer, trainer.lightning_module)
    assert {"train/loss_step", "train/acc", "img/s"} <= set(shown) and float(shown["img/s"]) > 0


def test_checkpoint_loads_with_weights_only(finished_run):
    checkpoint = torch.load(finished_run / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["network_class"] == "cifar_lightning.models.seed.SeedNet"
    assert checkpoint["hyper_parameters"]["label_smoothing"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluation_subcommands_run_from_a_checkpoint(
    subcommand, finished_copy, real_data_dir, real_archive, monkeypatch
):
    monkeypatch.chdir(finished_copy)
    ckpt = str(finished_copy / "lightning_logs/version_0/checkpoints/last.ckpt")
    result = run_cli(
        [subcommand, "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, "--ckpt_path", ckpt]
    )
    if subcommand == "predict":
        probabilities = torch.cat(result.trainer.predict_loop.predictions)
        assert probabilities.shape == (128, 10) and torch.allclose(probabilities.sum(1), torch.ones(128))
    else:
        assert f"{'val' if subcommand == 'validate' else 'test'}/acc" in result.trainer.callback_metrics


@pytest.mark.slow
@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_an_evaluation_without_a_logger_leaves_the_working_folder_as_it_was(
    subcommand, finished_run, tmp_path, real_data_dir, real_archive, monkeypatch
):
    """No run folder to record into: the metrics and the per-class table are printed, and nothing is written."""
    monkeypatch.chdir(tmp_path)
    ckpt = str(finished_run / "lightning_logs/version_0/checkpoints/last.ckpt")
    result = run_cli(
        [
            subcommand,
            "--config",
            CONFIG,
            *data_args(real_data_dir, real_archive),
            *TINY,
            "--ckpt_path",
            ckpt,
            "--trainer.logger=false",
        ]
    )
    assert f"{'val' if subcommand == 'validate' else 'test'}/acc" in result.trainer.callback_metrics
    assert list(tmp_path.iterdir()) == []


def test_another_network_is_a_config_change(tmp_path, real_data_dir, real_archive, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, "--model.network=helpers.TinyNet"]
    )
    assert type(result.model.network).__name__ == "TinyNet"
    assert result.trainer.global_step == 3


@pytest.mark.slow
def test_bf16_mixed_precision_needs_no_code_change(tmp_path, real_data_dir, real_archive, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, "--trainer.precision=bf16-mixed"]
    )
    assert result.trainer.precision == "bf16-mixed" and result.trainer.global_step == 3


def test_print_config(capsys):
    result = main_in_process(["fit", "--config", CONFIG, "--print_config"], capsys)
    assert result.returncode == 0
    assert "class_path: cifar_lightning.models.SeedNet" in result.stdout
    assert "monitor: val/acc" in result.stdout


def test_offline_with_no_data_is_one_clear_line(tmp_path, monkeypatch, refused):
    proxy = "http://127.0.0.1:9"  # a closed local port: offline on any machine
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.chdir(tmp_path)
    line = refused("fit", "--config", CONFIG, f"--data.data_dir={tmp_path / 'empty'}", *TINY)
    assert line.startswith("error: no CIFAR-10 in") and "--data.archive" in line


def test_config_typo_is_rejected(refused):
    assert "label_smothing" in refused("fit", "--config", CONFIG, "--model.label_smothing=0.1")


def test_nonexistent_checkpoint(refused):
    assert "error: checkpoint nope.ckpt does not exist" in refused("test", "--config", CONFIG, "--ckpt_path=nope.ckpt")


@pytest.mark.parametrize("size", ["0", "-1"])
def test_nonpositive_batch_size(size, refused):
    line = refused("fit", "--config", CONFIG, f"--data.batch_size={size}")
    assert "data.batch_size" in line and "v>0" in line


def test_verbose_shows_the_traceback(capsys):
    from argparse import ArgumentError

    with pytest.raises(
        ArgumentError, match="data.batch_size"
    ):  # raised through: the console script prints its traceback
        main_in_process(["fit", "--config", CONFIG, "--data.batch_size=-1", "--verbose"], capsys)


def test_checkpoint_of_another_network_names_both(
    finished_run, tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    monkeypatch.chdir(tmp_path)
    ckpt = finished_run / "lightning_logs/version_0/checkpoints/last.ckpt"
    line = refused(
        "test",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *TINY,
        "--model.network=helpers.TinyNet",
        f"--ckpt_path={ckpt}",
    )
    assert "SeedNet" in line and "TinyNet" in line


def test_diverging_loss_stops_with_the_step_and_a_fix(tmp_path, monkeypatch, capsys, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY]
    stderr = one_line_error(
        main_in_process([*args, "--trainer.max_epochs=2", "--model.optimizer.init_args.lr=1e8"], capsys)
    )
    assert "training loss became nan at epoch" in stderr or "training loss became inf at epoch" in stderr
    assert "--model.optimizer.init_args.lr" in stderr
    assert "step" in stderr and "last good checkpoint: none yet" in stderr
    # it diverged within the first epoch: the diverged weights were never saved
    assert not list((tmp_path / "lightning_logs").glob("*/checkpoints/*.ckpt"))


@pytest.mark.slow
def test_a_loss_gone_nan_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, "--trainer.max_epochs=3"]
    poison = ["--trainer.callbacks+=helpers.PoisonAt", "--trainer.callbacks.epoch=1"]
    stderr = one_line_error(main_in_process([*args, *poison], capsys))
    checkpoints = tmp_path / "lightning_logs/version_0/checkpoints"
    assert "at epoch 1, step 4" in stderr and f"last good checkpoint: {checkpoints / 'last.ckpt'}" in stderr.replace(
        "./", f"{tmp_path}/"
    )
    # what was saved is epoch 0's finite weights; the best checkpoint is that epoch too
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )
    assert [p.name for p in checkpoints.glob("epoch*.ckpt")] == [p.name for p in checkpoints.glob("epoch000-*.ckpt")]


def test_adamw_is_a_config_change(tmp_path, real_data_dir, real_archive, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        *data_args(real_data_dir, real_archive),
        *TINY,
        "--model.optimizer=torch.optim.AdamW",
        "--model.optimizer.lr=0.003",
    ]
    result = run_cli(["fit", "--config", CONFIG, *args])
    optimizer = result.trainer.optimizers[0]
    assert type(optimizer).__name__ == "AdamW" and optimizer.param_groups[0]["max_lr"] == 0.003


@pytest.mark.slow
def test_fixed_seed_repeats_a_fit(tmp_path, real_data_dir, real_archive, monkeypatch):
    def fit(folder: str) -> dict:
        monkeypatch.chdir(tmp_path)
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        result = run_cli(
            ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, "--data.num_workers=1"]
        )
        timings = ("img/s", "time/epoch_s")  # wall-clock figures, not results
        return {k: float(v) for k, v in result.trainer.callback_metrics.items() if k not in timings}

    assert fit("a") == fit("b")


@pytest.mark.slow
def test_last_checkpoint_is_the_last_epoch_even_without_improvement(tmp_path, real_data_dir, real_archive, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # lr 0 and no weight averaging: the weights never change, so epoch 1 cannot beat epoch 0's val/acc
    args = [
        *data_args(real_data_dir, real_archive),
        *TINY,
        "--trainer.max_epochs=2",
        "--model.optimizer.init_args.lr=0",
    ]
    args.append("--trainer.callbacks=[]")
    run_cli(["fit", "--config", CONFIG, *args])
    checkpoints = tmp_path / "lightning_logs/version_0/checkpoints"
    assert [p.name for p in checkpoints.glob("epoch*.ckpt")] == [p.name for p in checkpoints.glob("epoch000-*.ckpt")]
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 1


@pytest.mark.slow
def test_a_checkpoint_saved_between_logging_steps_never_holds_a_diverged_loss(
    tmp_path, monkeypatch, capsys, real_data_dir, real_archive
):
    # the guard reads its flag only at logging steps (every 50 here) and before each save: a
    # checkpoint after every step must stop at the first diverged one, unwritten
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *TINY,
        "--trainer.max_epochs=3",
        "--last_checkpoint.every_n_train_steps=1",
        "--trainer.callbacks+=helpers.PoisonAt",
        "--trainer.callbacks.epoch=1",
    ]
    stderr = one_line_error(main_in_process(args, capsys))
    assert "at epoch 1, step 4" in stderr
    last = torch.load(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == 3 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )


class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))  # any callable would do; this one leaves a trace


def test_checkpoint_with_a_pickled_callable_is_refused_unrun(
    finished_run, tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    marker = tmp_path / "code-ran"
    checkpoint = torch.load(finished_run / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    checkpoint["payload"] = _RunsCodeWhenUnpickled(marker)
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    monkeypatch.chdir(tmp_path)
    assert "refused" in refused(
        "test", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, f"--ckpt_path={crafted}"
    )
    assert not marker.exists()


def test_predict_on_your_own_images(finished_copy, tmp_path, real_data_dir, real_archive, monkeypatch, refused):
    import csv

    from PIL import Image

    from cifar_lightning.data import sources

    arrays = sources.read_cache(SUBSET_CACHE)
    folder = tmp_path / "mine"
    (folder / "nested").mkdir(parents=True)
    spacing = len(arrays.test_images) // 4  # the whole copy or the subset
    for i in range(4):  # real test images, saved larger and in other formats than training saw
        image = Image.fromarray(arrays.test_images[i * spacing]).resize((64, 64))
        image.save(folder / f"img{i}.png") if i % 2 else image.convert("L").save(folder / "nested" / f"img{i}.jpg")
    (folder / "notes.txt").write_text("not an image")
    monkeypatch.chdir(finished_copy)
    ckpt = str(finished_copy / "lightning_logs/version_0/checkpoints/last.ckpt")
    args = [
        "predict",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *TINY,
        f"--data.predict_dir={folder}",
    ]
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable or oversized file.*notes.txt"):
        run_cli([*args, "--ckpt_path", ckpt, "--model.tta=flip"])  # predict decides its own test-time views
    written = sorted((finished_copy / "lightning_logs").glob("*/predictions.csv"), key=lambda p: p.stat().st_mtime)[-1]
    with written.open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["path"]).name for r in rows) == ["img0.jpg", "img1.png", "img2.jpg", "img3.png"]
    for row in rows:
        top3 = [(row[f"class{r}"], float(row[f"probability{r}"])) for r in ("", "_2", "_3")]
        assert row["class"] in CIFAR10_CLASSES and 0 < float(row["probability"]) <= 1
        assert len({name for name, _ in top3}) == 3 and top3[0][1] >= top3[1][1] >= top3[2][1]
        assert row["views"] == "2"  # the file records the views its predictions averaged
    # a second predict into the same folder takes the next free name; an output that exists is refused
    first = written.read_bytes()
    run_cli([*args, "--ckpt_path", ckpt])
    assert (written.parent / "predictions-2.csv").is_file() and written.read_bytes() == first
    line = refused(*args, "--ckpt_path", ckpt, f"--prediction_writer.output={written}")
    assert line == f"error: {written} exists: pass another --prediction_writer.output, or move that file away"
    assert written.read_bytes() == first


@pytest.mark.slow
def test_every_callback_a_run_gets_is_shown_and_each_goes_off_with_its_key(
    tmp_path, real_data_dir, real_archive, monkeypatch, capsys
):
    import yaml

    from cifar_lightning.callbacks import SWITCHABLE_CALLBACKS

    monkeypatch.chdir(tmp_path)
    printed = main_in_process(["fit", "--config", CONFIG, "--print_config"], capsys)
    shown = yaml.safe_load(printed.stdout)
    assert all(shown[key]["class_path"].endswith(cls.__name__) for key, (cls, _) in SWITCHABLE_CALLBACKS.items())
    off = ["speed_monitor", "fit_summary", "lr_monitor"]
    trainer = run_cli(
        ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, *(f"--{k}=null" for k in off)]
    ).trainer
    kinds = {type(c).__name__ for c in trainer.callbacks}
    assert not kinds & {SWITCHABLE_CALLBACKS[k][0].__name__ for k in off}
    assert {"RandomState", "FiniteLossGuard", "RunInfo"} <= kinds
    # the docs list every one of them with its key
    page = (REPO / "docs" / "callbacks.md").read_text()
    assert all(f"`{key}`" in page for key in [*SWITCHABLE_CALLBACKS, "run_info", "checkpoint", "last_checkpoint"])


@pytest.mark.parametrize(
    "setting",
    [
        ["--checkpoint.monitor=val/accuracy"],
        ["--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping", "--trainer.callbacks.monitor=val_acc"],
    ],
)
def test_a_monitor_of_a_metric_the_fit_never_logs_is_refused_before_the_first_step(
    setting, refused, tmp_path, monkeypatch
):
    # found by trying: EarlyStopping on a typo ended the fit in a traceback after its first epoch
    monkeypatch.chdir(tmp_path)
    line = refused("fit", "--config", CONFIG, *data_args(), *TINY, *setting)
    assert "which a fit never logs: monitor one of train/loss" in line
    assert not (tmp_path / "lightning_logs").exists()


def test_test_checks_its_data_and_reads_its_checkpoint_once(
    finished_copy, real_data_dir, real_archive, monkeypatch, tmp_path
):
    """The classes come from the data before the data module exists, which then gets the same cache; the checkpoint
    the CLI checks is the one the Trainer restores."""
    from cifar_lightning.data import sources
    from cifar_lightning.runs import checkpoint_io

    prepared, read = [], []
    real_prepare, real_read = sources.prepare, checkpoint_io.read_checkpoint
    monkeypatch.setattr(sources, "prepare", lambda *a, **k: prepared.append(a) or real_prepare(*a, **k))
    monkeypatch.setattr(checkpoint_io, "read_checkpoint", lambda *a: read.append(a) or real_read(*a))
    monkeypatch.chdir(tmp_path)
    run = finished_copy / "lightning_logs" / "version_0"
    ckpt = run / "checkpoints" / "last.ckpt"
    run_cli(
        [
            "test",
            "--config",
            str(run / "config.yaml"),
            f"--ckpt_path={ckpt}",
            *data_args(real_data_dir, real_archive),
            *TINY,
        ]
    )
    assert len(prepared) == 1 and read == []  # the restore used the checkpoint the CLI read and checked
