"""Faults end in one line, never a hang, and lose nothing: loader workers, settings,
broken checkpoint files, failed checkpoint writes, leftovers of killed runs, resuming."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest
import torch

from cifar_lightning.data import Augmentation, sources
from cifar_lightning.data.augment import train_transform
from cifar_lightning.errors import ConfigError, DataError
from harness import CONFIG, TINY, Finished, cli, data_args, main_in_process, one_line_error, tiny_run


def processes_mentioning(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (loader workers are forks: same command line)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


# ------------------------------------------------------------------ a failing loader worker


@pytest.mark.process
def test_an_error_in_a_loader_worker_ends_the_command(tmp_path, real_data_dir, real_archive):
    marker = str(tmp_path / "worker-error")
    started = time.monotonic()
    result = cli(
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *TINY,
        "--data.pipeline=albumentations",
        "--data.num_workers=2",
        "--trainer.limit_train_batches=20",
        "--trainer.callbacks+=helpers.FailInLoaderAt",
        "--trainer.callbacks.at=40",
        f"--trainer.default_root_dir={marker}",
        cwd=tmp_path,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    stderr = one_line_error(result)
    assert "planted failure on call 40" in stderr and "failed in the data pipeline" in stderr
    assert elapsed < 60, f"took {elapsed:.0f} s to exit"
    time.sleep(1)
    assert processes_mentioning(marker) == [], "a loader worker outlived the command"


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hflip_p", 1.5),
        ("affine_p", -0.1),
        ("cutout_p", 2.0),
        ("cutout_size", 64),
        ("cutout_size", -1),
        ("shift_px", -1),
        ("shift_px", 32),
        ("shift_px", 1.5),
        ("scale", 1.0),
        ("scale", -0.1),
        ("rotate", 181.0),
        ("rotate", -5.0),
    ],
)
def test_an_augmentation_value_out_of_range_names_key_and_range(key, value):
    with pytest.raises(ConfigError, match=rf"data\.augmentation\.{key} = {value!r} .*(in \[|whole)"):
        Augmentation(**{key: value})


def test_albumentations_own_refusal_is_one_line():
    aug = Augmentation()
    object.__setattr__(aug, "hflip_p", 3.0)  # past our check, so albumentations' own validation meets it
    with pytest.raises(ConfigError, match="albumentations refused data.augmentation"):
        train_transform(aug, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("setting", ["--data.augmentation.hflip_p=1.5", "--data.augmentation.cutout_size=64"])
def test_a_bad_setting_stops_before_any_work(tmp_path, monkeypatch, refused, setting):
    monkeypatch.chdir(tmp_path)
    assert setting.split("=")[0].removeprefix("--") in refused(
        "fit", "--config", CONFIG, f"--data.data_dir={tmp_path / 'data'}", setting
    )
    assert not (tmp_path / "data").exists() and not (tmp_path / "lightning_logs").exists()


def test_the_cli_cannot_replace_the_modules_optimizer_and_schedule(refused):
    assert "--optimizer" in refused("fit", "--config", CONFIG, "--optimizer", "torch.optim.Adam")


# ------------------------------------------------------------------ checkpoint files that are not whole


def broken_checkpoints(good: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a checkpoint\n"}
    paths = {}
    for kind, content in files.items():
        paths[kind] = folder / f"{kind}.ckpt"
        paths[kind].write_bytes(content)
    paths["other-torch-file"] = folder / "tensor.ckpt"
    torch.save({"weights": torch.zeros(3)}, paths["other-torch-file"])
    return paths


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "other-torch-file"])
@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_a_broken_checkpoint_is_refused_by_every_subcommand(
    subcommand, kind, finished_run, tmp_path, monkeypatch, refused
):
    path = broken_checkpoints(finished_run / "lightning_logs/version_0/checkpoints/last.ckpt", tmp_path)[kind]
    monkeypatch.chdir(tmp_path)
    assert f"{path} is not a complete checkpoint" in refused(subcommand, "--config", CONFIG, f"--ckpt_path={path}")


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "other-torch-file"])
def test_a_broken_checkpoint_is_refused_by_export_load_and_the_teacher(
    kind, finished_run, tmp_path, monkeypatch, capsys
):
    import cifar_lightning
    from cifar_lightning.errors import CheckpointError
    from cifar_lightning.inference import export
    from cifar_lightning.models import SeedNet
    from cifar_lightning.runs.checkpoints import read_checkpoint
    from cifar_lightning.training.distillation import Distillation

    path = broken_checkpoints(finished_run / "lightning_logs/version_0/checkpoints/last.ckpt", tmp_path)[kind]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        export.main(["--config", CONFIG, "--ckpt_path", str(path)])
    assert f"{path} is not a complete checkpoint" in one_line_error(
        Finished(stopped.value.code, "", capsys.readouterr().err)
    )
    with pytest.raises(CheckpointError, match="a folder or device, not a file"):
        read_checkpoint(tmp_path)
    for load in (
        read_checkpoint,
        cifar_lightning.load,
        lambda p: Distillation(SeedNet(), str(p)).load_teacher(torch.device("cpu"), True),
    ):
        with pytest.raises(CheckpointError, match="is not a complete checkpoint"):
            load(path)


def test_report_refuses_a_broken_checkpoint_in_the_run(finished_run, tmp_path, capsys):
    from cifar_lightning.tools import report

    run = tmp_path / "run"
    shutil.copytree(finished_run / "lightning_logs/version_0", run)
    (run / "checkpoints/last.ckpt").write_bytes((run / "checkpoints/last.ckpt").read_bytes()[:1000])
    with pytest.raises(SystemExit) as stopped:
        report.main([str(run)])
    assert "is not a complete checkpoint" in one_line_error(Finished(stopped.value.code, "", capsys.readouterr().err))


# ------------------------------------------------------------------ a checkpoint write that fails


@pytest.mark.slow
def test_a_failed_checkpoint_write_ends_the_fit_and_keeps_the_last_one(
    tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        torch, "save", torch.save
    )  # the callback replaces it for this process: put it back after the test
    args = [a for a in TINY if "max_epochs" not in a]
    stderr = refused(
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *args,
        "--trainer.max_epochs=3",
        "--trainer.callbacks+=helpers.FailSavesFrom",
        "--trainer.callbacks.epoch=1",
    )
    checkpoints = tmp_path / "lightning_logs/version_0/checkpoints"
    assert (
        "cannot write checkpoint" in stderr
        and "lightning_logs/version_0/checkpoints/" in stderr
        and "No space left on device" in stderr
    )
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 0  # epoch 0's, whole
    assert not list(checkpoints.glob(".*partial"))


@pytest.mark.parametrize(
    ("free_bytes", "cause"), [(0, "no space left on device: 0 kB free"), (10**9, "unexpected pos 187328")]
)
def test_a_full_disk_is_named_even_when_torch_only_says_unexpected_pos(free_bytes, cause, tmp_path, monkeypatch):
    # a real 4 MB tmpfs as the log folder: torch's zip writer raised "[enforce fail at
    # inline_container.cc:672] . unexpected pos 187328 vs 187224", which names no cause
    from collections import namedtuple

    from cifar_lightning.errors import CheckpointError
    from cifar_lightning.runs import checkpoint_io

    def cut_short(obj, f):
        f.write(b"PK half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 187328 vs 187224")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint_io.torch, "save", cut_short)
    monkeypatch.setattr(
        checkpoint_io.shutil, "disk_usage", lambda folder: usage(4 << 20, (4 << 20) - free_bytes, free_bytes)
    )
    (tmp_path / "last.ckpt").write_bytes(b"the previous checkpoint")
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*last.ckpt") as refused:
        checkpoint_io.AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
    assert cause in str(refused.value)
    assert (tmp_path / "last.ckpt").read_bytes() == b"the previous checkpoint" and not list(tmp_path.glob(".*partial"))


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_cache_disk_is_named_when_writing_the_cache(image_folder, tmp_path, monkeypatch):
    # found on real tmpfs data folders: 300 MB (the cache after unpacking) ended in an OSError traceback
    archive = tmp_path / "copy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(image_folder / "tiny-cifar", arcname="tiny-cifar")
    monkeypatch.setattr(sources.np, "savez", no_space)
    with pytest.raises(
        DataError, match=r"cannot write the decoded cache .*\(No space left on device\): free disk space"
    ):
        sources.prepare(tmp_path / "data", archive, download_ok=False, cache_dir=tmp_path / "decoded")
    assert not list((tmp_path / "decoded").glob(".*.partial"))


def test_a_full_disk_anywhere_else_is_one_line_and_a_writer_thread_one_warning(capsys):
    import threading

    from cifar_lightning.errors import user_errors

    with pytest.raises(SystemExit) as stopped, user_errors(False, "python -m cifar_lightning fit"):
        writer = threading.Thread(target=no_space, name="event-writer")  # TensorBoard's writer is such a thread
        writer.start()
        writer.join()
        no_space()  # run.json, a callback's file: the main thread meets it too
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert err.splitlines() == [
        "warning: the disk is full (No space left on device): thread event-writer stopped writing (TensorBoard's curves end here)",
        "error: the disk is full (No space left on device): free disk space, or point the logger's save_dir and --data.cache_dir "
        "at a disk with room; a fit resumes with --ckpt_path last",
    ]


# ------------------------------------------------------------------ folders that cannot be written


@pytest.mark.parametrize(
    "subcommand, setting, named",
    [
        ("fit", "--trainer.logger.init_args.save_dir={blocked}/logs", "log folder"),
        ("test", "--trainer.logger.init_args.save_dir={blocked}", "log folder"),
        ("fit", "--data.cache_dir={blocked}/cache", "cache folder"),
        ("predict", "--prediction_writer.output={blocked}/predictions.csv", "predictions folder"),
    ],
)
def test_a_file_where_a_folder_should_be_is_named_before_any_work(
    subcommand, setting, named, tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    monkeypatch.chdir(tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    line = refused(
        subcommand, "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, setting.format(blocked=blocked)
    )
    assert f"cannot write the {named} {blocked}" in line and "a file is in the way of a folder there" in line
    assert not list(tmp_path.glob("**/version_*")) and blocked.read_text() == ""


@pytest.mark.slow
def test_a_read_only_folder_is_named_before_any_work(tmp_path, monkeypatch, refused, real_data_dir, real_archive):
    import tempfile

    real = tempfile.NamedTemporaryFile

    def read_only_below(
        *args, dir=None, **kwargs
    ):  # what a read-only mount answers; as root, permissions would not bite
        if dir is not None and "read-only" in str(dir):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr("cifar_lightning.errors.tempfile.NamedTemporaryFile", read_only_below)
    monkeypatch.chdir(tmp_path)
    for setting, named in (
        (f"--trainer.logger.init_args.save_dir={tmp_path / 'read-only'}", "log folder"),
        (f"--data.cache_dir={tmp_path / 'read-only'}", "cache folder"),
    ):
        line = refused("fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, setting)
        assert f"cannot write the {named} {tmp_path / 'read-only'}" in line and "(Read-only file system)" in line
    assert not list(tmp_path.glob("**/version_*"))


@pytest.mark.parametrize(
    "code, why",
    [
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
        (errno.ENOTDIR, "a file is in the way of a folder there"),
    ],
)
def test_a_write_refused_anywhere_else_is_one_line(code, why, capsys):
    from cifar_lightning.errors import user_errors

    with pytest.raises(SystemExit) as stopped, user_errors(False, "python -m cifar_lightning fit"):
        raise OSError(code, os.strerror(code), "/runs/version_0/run.json")  # a write no check came before
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.splitlines() == [
        f"error: cannot write /runs/version_0/run.json ({why}): make the folder writable, or point the logger's save_dir, "
        "--data.cache_dir or the output elsewhere"
    ]


# ------------------------------------------------------------------ settings that leave no training step


@pytest.mark.parametrize(
    "setting, named",
    [
        ("--data.batch_size=60000", "data.batch_size=60000 is larger than the training split"),
        ("--trainer.limit_train_batches=0", "trainer.limit_train_batches=0"),
        ("--trainer.max_epochs=0", "trainer.max_epochs=0"),
        ("--trainer.max_steps=0", "trainer.max_steps=0"),
        ("--trainer.max_epochs=-1", "trainer.max_epochs=-1 with no trainer.max_steps"),
    ],
)
@pytest.mark.slow
def test_a_setting_that_leaves_no_training_step_is_refused_and_leaves_no_run_folder(
    setting, named, tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)  # an earlier run's folder: never touched
    assert named in refused("fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, setting)
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


@pytest.mark.parametrize(("pct_start", "epochs", "batches"), [(0.25, 2, 2), (0.1, 1, 10), (0.5, 1, 2)])
def test_a_one_step_warm_up_is_refused_and_leaves_no_run_folder(
    pct_start, epochs, batches, tmp_path, monkeypatch, refused, real_data_dir, real_archive
):
    # torch's OneCycleLR divides by zero when pct_start x the training steps is exactly 1
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)  # an earlier run's folder: never touched
    error = refused(
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *tiny_run(epochs=epochs, train_batches=batches),
        f"--model.pct_start={pct_start}",
    )
    assert f"model.pct_start={pct_start} of {epochs * batches} training steps is a one-step warm-up" in error
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


def test_only_a_claimed_folder_without_a_result_is_released(tmp_path):
    from cifar_lightning.runs import folders as run_folders

    logs = tmp_path / "lightning_logs"
    (logs / "version_0" / "checkpoints").mkdir(parents=True)  # not claimed by this process
    assert not run_folders.release_unused(logs / "version_0") and (logs / "version_0").is_dir()
    claimed = logs / run_folders.claim_version(logs)
    (claimed / "checkpoints").mkdir()
    (claimed / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    assert not run_folders.release_unused(claimed)  # a checkpoint is a result
    (claimed / "checkpoints" / "last.ckpt").unlink()
    trained = logs / run_folders.claim_version(logs)
    run_folders.mark_trained(trained)  # a training step wrote its curves there
    assert not run_folders.release_unused(trained)
    (claimed / "config.yaml").write_text("{}")
    assert run_folders.release_unused(claimed)
    assert sorted(p.name for p in logs.iterdir()) == ["version_0", trained.name]


@pytest.mark.slow
def test_every_fit_writes_checkpoints_atomically_and_its_config_records_it(
    finished_run, tmp_path, real_data_dir, real_archive, monkeypatch
):
    from cifar_lightning.lightning_cli import run_cli
    from cifar_lightning.runs.checkpoint_io import AtomicCheckpointIO

    config = finished_run / "lightning_logs/version_0/config.yaml"
    assert "cifar_lightning.runs.checkpoint_io.AtomicCheckpointIO" in config.read_text()
    # a run's own config.yaml already names it: a fit from it must not add a second (Lightning refuses two)
    monkeypatch.chdir(tmp_path)
    again = run_cli(["fit", "--config", str(config), *data_args(real_data_dir, real_archive), "--trainer.max_epochs=1"])
    assert isinstance(again.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert (tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt").is_file()


# ------------------------------------------------------------------ leftovers of a killed run


def test_a_rerun_removes_what_a_killed_decoding_left(image_folder, tmp_path):
    cache = sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c")
    cache.unlink()
    half = cache.with_name(f".{cache.name}.killed.partial")
    half.write_bytes(b"half")
    assert sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c") == cache
    assert cache.is_file() and not half.exists()


# ------------------------------------------------------------------ resuming


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_with_other_training_settings_is_refused_and_the_record_kept(
    finished_copy, monkeypatch, refused, real_data_dir, real_archive
):
    record = finished_copy / "lightning_logs/version_0/config.yaml"
    before = digest(record)
    args = [a for a in TINY if "max_epochs" not in a]
    monkeypatch.chdir(finished_copy)
    stderr = refused(
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *args,
        "--trainer.max_epochs=2",
        "--model.optimizer.init_args.lr=0.003",
        "--data.augmentation.cutout_p=0",
        "--ckpt_path=last",
    )
    assert "data.augmentation.cutout_p, model.optimizer.init_args.lr" in stderr
    assert "Start a new run without --ckpt_path" in stderr and "version_0/config.yaml --ckpt_path last" in stderr
    assert digest(record) == before


def test_resuming_a_finished_run_says_so_and_changes_nothing(
    finished_copy, monkeypatch, capsys, real_data_dir, real_archive
):
    record = finished_copy / "lightning_logs/version_0/config.yaml"
    before = digest(record)
    monkeypatch.chdir(finished_copy)
    result = main_in_process(
        ["fit", "--config", str(record), *data_args(real_data_dir, real_archive), "--ckpt_path=last"], capsys
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already finished its 2 epochs: nothing to resume" in result.stderr.strip().splitlines()[-1]
    assert digest(record) == before
    assert [p.name for p in (finished_copy / "lightning_logs").iterdir()] == ["version_0"]


def test_resume_ignores_settings_that_do_not_change_training():
    from cifar_lightning.runs.resume import training_differences

    assert (
        training_differences(
            {
                "trainer": {"enable_progress_bar": True, "devices": 1, "max_epochs": 2},
                "data": {"num_workers": 1, "batch_size": 32},
            },
            {
                "trainer": {"enable_progress_bar": False, "devices": 2, "max_epochs": 2},
                "data": {"num_workers": 0, "batch_size": 32},
            },
        )
        == []
    )


# ------------------------------------------------------------------ DDP


@pytest.mark.process
@pytest.mark.xdist_group("ddp")  # two DDP launches at once would race for a free port
def test_a_loss_gone_non_finite_on_one_ddp_process_stops_both(tmp_path, real_data_dir, real_archive):
    ddp = str(Path(CONFIG).with_name("ddp.yaml"))
    result = cli(
        "fit",
        "--config",
        CONFIG,
        "--config",
        ddp,
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.sync_batchnorm=false",
        *data_args(real_data_dir, real_archive),
        *TINY,
        "--trainer.callbacks+=helpers.PoisonBatchOnRank",
        "--trainer.callbacks.rank=1",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: the training loss became")]
    # both processes stop together, each with the same one line: the first non-finite step, and on which process
    assert len(errors) == 2 and errors[0] == errors[1] and "at epoch 0, step 2 (on process 1):" in errors[0], (
        result.stderr[-3000:]
    )


OUT_OF_RANGE = "does not conform to restriction"


@pytest.mark.parametrize(
    ("setting", "named", "why"),
    [
        ("--model.label_smoothing=2", "model.label_smoothing", OUT_OF_RANGE),
        ("--model.pct_start=1.5", "model.pct_start", OUT_OF_RANGE),
        ("--model.div_factor=0", "model.div_factor", OUT_OF_RANGE),
        ("--model.tta=mirror", "model.tta", "Literal['none', 'flip', 'flip_shift']"),
    ],
)
def test_a_model_setting_out_of_range_is_one_line_before_any_work(setting, named, why, tmp_path, monkeypatch, refused):
    monkeypatch.chdir(tmp_path)
    stderr = refused("fit", "--config", CONFIG, f"--data.data_dir={tmp_path / 'data'}", setting)
    assert named in stderr and why in stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "lightning_logs").exists()
