"""``cifar-lightning search``: an Optuna study of a recipe on the validation split, pruned, resumable, shared."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cifar_lightning.data import ImageDataModule
from harness import REPO, data_args, main_in_process, one_line_error, tiny_run, with_helpers

FAST = REPO / "configs" / "fast.yaml"
SPACE = REPO / "configs" / "search" / "fast.yaml"
LR = "model.optimizer.init_args.lr"
DIVERGING = 1.0e4  # a peak rate no network survives
STALLED = 1.0e-6  # a peak rate at which nothing is learnt in a tiny trial, and nothing diverges either


def trial_args(real_data_dir, real_archive) -> list[str]:
    """A trial that takes a second or two and still learns: a tiny network, 2 epochs of 10 batches, fp32."""
    return [
        *data_args(real_data_dir, real_archive),
        *tiny_run(epochs=2, train_batches=10, batch_size=64, eval_batch_size=125),
        "--trainer.limit_val_batches=4",
        "--trainer.enable_model_summary=false",
        "--trainer.precision=32-true",
        "--model.network=helpers.TinyNet",
    ]


def read_trials(table: Path) -> list[dict]:
    with table.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_three_trial_study_prunes_a_diverging_trial_and_never_reads_the_test_set(
    tmp_path, monkeypatch, capsys, real_data_dir, real_archive
):
    made = {"val": 0, "test": 0}  # the spy: which evaluation loaders the data modules made

    def spy(split, real):
        def loader(self):
            made[split] += 1
            return real(self)

        return loader

    monkeypatch.setattr(ImageDataModule, "val_dataloader", spy("val", ImageDataModule.val_dataloader))
    monkeypatch.setattr(ImageDataModule, "test_dataloader", spy("test", ImageDataModule.test_dataloader))
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "study.db"
    result = main_in_process(
        [
            "search",
            "--config",
            FAST,
            "--space",
            SPACE,
            "--study",
            study,
            "--trials",
            "3",
            "--startup",
            "1",
            "--seed",
            "0",
            "--enqueue",
            f"{LR}={DIVERGING}",
            *trial_args(real_data_dir, real_archive),
        ],
        capsys,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert made["val"] >= 3 and made["test"] == 0  # the search scores on validation only

    trials = read_trials(tmp_path / "study.trials.csv")
    assert [t["state"] for t in trials][:2] == ["COMPLETE", "PRUNED"] and len(trials) == 3
    recipe = yaml.safe_load(FAST.read_text())
    # the first trial is the recipe itself; the second the enqueued diverging rate, stopped by the pruner after its first epoch
    assert float(trials[0][f"params_{LR}"]) == recipe["model"]["optimizer"]["init_args"]["lr"]
    assert (
        float(trials[1][f"params_{LR}"]) == DIVERGING
        and trials[1]["user_attrs_stopped_by"] == "pruner (validation curve)"
    )
    assert all(Path(t["user_attrs_run_dir"], "config.yaml").is_file() for t in trials)  # each trial is a run folder
    finished = sum(t["state"] == "COMPLETE" for t in trials)
    assert (tmp_path / "study.importance.png").is_file() == (finished >= 2)  # drawn from 2 finished trials on

    best = yaml.safe_load((tmp_path / "study.best.yaml").read_text())
    best_trial = max((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: float(t["value"]))
    assert best["model"]["optimizer"]["init_args"]["lr"] == float(best_trial[f"params_{LR}"])
    assert re.search(
        r"train it: \S*cifar-lightning fit --config", result.stdout
    )  # as the shell runs it (errors.shell_command)
    assert str(tmp_path / "study.best.yaml") in result.stdout
    # the best config trains as it is (one batch here), in a new run folder
    again = main_in_process(
        ["fit", "--config", tmp_path / "study.best.yaml", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1"],
        capsys,
    )
    assert again.returncode == 0, again.stderr[-3000:]

    # the study resumes: one more trial in the same file (no pruning this time, so that it finishes)
    more = main_in_process(
        [
            "search",
            "--config",
            FAST,
            "--space",
            SPACE,
            "--study",
            study,
            "--trials",
            "1",
            "--startup",
            "10",
            *trial_args(real_data_dir, real_archive),
        ],
        capsys,
    )
    assert more.returncode == 0, more.stderr[-3000:]
    trials = read_trials(tmp_path / "study.trials.csv")
    assert len(trials) == 4 and trials[3]["state"] == "COMPLETE"
    assert (tmp_path / "study.importance.png").stat().st_size > 10_000 and "importance: " in more.stdout


@pytest.mark.slow
def test_a_study_refuses_another_recipe(tmp_path, monkeypatch, capsys, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    args = [
        "search",
        "--config",
        FAST,
        "--space",
        SPACE,
        "--study",
        tmp_path / "study.db",
        "--trials",
        "1",
        *trial_args(real_data_dir, real_archive),
    ]
    assert main_in_process(args, capsys).returncode == 0
    refused = main_in_process([*args, "--trainer.max_epochs=3"], capsys)  # another training setting: another recipe
    assert "belongs to another recipe" in one_line_error(refused)
    # a setting that changes no training (the data's location, the progress bar) is the same recipe
    same = main_in_process([*args, "--trainer.enable_progress_bar=true"], capsys)
    assert same.returncode == 0, same.stderr[-3000:]


@pytest.mark.parametrize(
    ("space", "named"),
    [
        (
            {"model.optimizer.init_args.lrr": {"low": 0.1, "high": 1.0}},
            "model.optimizer.init_args.lrr is not a setting of",
        ),
        ({LR: {"low": 1.0, "high": 0.1}}, f"{LR} must be"),
        ({LR: [0.1, 0.2]}, f"{LR} must be"),
        (
            {LR: {"low": 0.0, "high": 1.0, "log": True}},
            f"{LR} must be",
        ),  # found by trying: Optuna's ValueError traceback
        ({LR: {"low": 0.1, "high": 1.0, "log": "yes"}}, f"{LR} must be"),
    ],
)
def test_a_bad_search_space_is_one_line_naming_the_key(space, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    result = main_in_process(["search", "--config", FAST, "--space", tmp_path / "space.yaml"], capsys)
    assert named in one_line_error(result)
    assert not (tmp_path / "lightning_logs").exists()


LONG_TRIAL, LONG_EPOCHS = 40, 6  # batches an epoch, epochs: a trial long enough to be stopped in the middle


def search_args(study: str, real_data_dir, real_archive, storage: str | None = None, long: bool = False) -> list[str]:
    """One search worker's arguments: one tiny trial (``long``: one that can be stopped in the middle)."""
    trial = trial_args(real_data_dir, real_archive)
    if long:
        trial = [
            a if not a.startswith("--trainer.limit_train_batches") else f"--trainer.limit_train_batches={LONG_TRIAL}"
            for a in trial
        ] + [f"--trainer.max_epochs={LONG_EPOCHS}"]
    where = ["--storage", storage] if storage else []
    return [
        "search",
        "--config",
        str(FAST),
        "--space",
        str(SPACE),
        "--study",
        f"{study}.db",
        *where,
        "--trials",
        "1",
        *trial,
    ]


def start_worker(folder: Path, args: list[str]) -> subprocess.Popen:
    """``python -m cifar_lightning ARGS`` in ``folder``, as a worker on a machine of its own."""
    folder.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "cifar_lightning", *args],
        cwd=folder,
        env=with_helpers({"OMP_NUM_THREADS": "1"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_search_without_its_extra_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # what an import finds when it is not installed
    monkeypatch.chdir(tmp_path)
    result = main_in_process(["search", "--config", FAST, "--space", SPACE], capsys)
    assert "needs optuna" in one_line_error(result) and "cifar_lightning[search]" in result.stderr


@pytest.fixture(scope="module")
def postgresql():
    """The URL of a throwaway PostgreSQL server (tests/postgres.py), shared by this module's tests."""
    from postgres import server_binaries, throwaway_server

    if server_binaries() is None:
        if os.environ.get("CIFAR_LIGHTNING_NO_SKIPS") == "1":
            pytest.fail("the search's storage tests need Debian's postgresql (.ci/run installs it)")
        pytest.skip("needs Debian's postgresql (apt-get install postgresql)")
    with throwaway_server() as (url, _):
        yield url


@pytest.mark.process
def test_three_workers_on_a_postgresql_server_share_one_study(
    tmp_path, postgresql, monkeypatch, capsys, real_data_dir, real_archive
):
    """Workers as on three machines: each its own folder, one command each, the study on a server."""
    import optuna

    folders = [tmp_path / f"machine-{i}" for i in range(3)]
    runs = [start_worker(f, search_args("shared", real_data_dir, real_archive, postgresql)) for f in folders]
    printed = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
        printed.append(out)
    study = optuna.load_study(study_name="shared", storage=postgresql)
    assert sorted(t.number for t in study.trials) == [0, 1, 2]  # each trial recorded once
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # and each run once, by one worker in its own folder
    assert [len(list((f / "lightning_logs").glob("version_*/checkpoints/last.ckpt"))) for f in folders] == [1, 1, 1]
    assert not (tmp_path / "machine-0" / "shared.db").exists()  # nothing of the study in a local file
    # the best config is written once, by the worker whose trial finished last; the others say so
    written = [f / "shared.best.yaml" for f in folders if (f / "shared.best.yaml").is_file()]
    assert len(written) == 1 and f"(trial {study.best_trial.number}," in written[0].read_text()
    assert sum("best config: left to the worker that finishes" in out for out in printed) == 2

    # a fourth worker's trial that learns nothing is pruned against the median of the other workers' trials
    (tmp_path / "machine-3").mkdir()
    monkeypatch.chdir(tmp_path / "machine-3")
    more = main_in_process(
        [*search_args("shared", real_data_dir, real_archive, postgresql), "--enqueue", f"{LR}={STALLED:.1e}"], capsys
    )
    assert more.returncode == 0, more.stderr[-3000:]
    stalled = optuna.load_study(study_name="shared", storage=postgresql).trials[-1]
    assert stalled.params[LR] == STALLED and stalled.state == optuna.trial.TrialState.PRUNED
    assert stalled.user_attrs["stopped_by"] == "pruner (validation curve)"


def test_a_storage_that_cannot_be_reached_is_one_line(tmp_path, monkeypatch, capsys, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    url = "postgresql+psycopg2://postgres:secret@127.0.0.1:9/none"  # nothing listens on port 9 here
    result = main_in_process(search_args("none", real_data_dir, real_archive, url), capsys)
    line = one_line_error(result).strip().splitlines()[-1]
    assert "the study's storage postgresql+psycopg2://postgres:***@127.0.0.1:9/none failed" in line
    assert "secret" not in line


@pytest.mark.slow
def test_a_study_in_a_journal_file_for_a_shared_file_system(tmp_path, monkeypatch, capsys, real_data_dir, real_archive):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    monkeypatch.chdir(tmp_path)
    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    result = main_in_process(search_args("search-fast", real_data_dir, real_archive, f"journal:{journal}"), capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    assert [t.state for t in optuna.load_study(study_name="search-fast", storage=storage).trials] == [
        optuna.trial.TrialState.COMPLETE
    ]


def wait_for_a_running_trial(storage: str, name: str, timeout: float = 120) -> None:
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=name, storage=storage).trials
        except KeyError:  # the study is not created yet
            trials = []
        if any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
            return
        time.sleep(0.5)
    raise AssertionError("no trial started")


@pytest.mark.process
def test_a_killed_workers_trial_is_failed_by_its_heartbeat_and_run_again_once(
    tmp_path, postgresql, monkeypatch, capsys, real_data_dir, real_archive
):
    import optuna

    from cifar_lightning.tools import search

    args = search_args("killed", real_data_dir, real_archive, postgresql, long=True)
    worker = start_worker(tmp_path / "machine-0", args)
    wait_for_a_running_trial(postgresql, "killed")
    time.sleep(1)
    worker.kill()  # SIGKILL mid-trial: the worker says nothing to the study
    worker.communicate(timeout=60)
    monkeypatch.setattr(search, "GRACE_S", 1)  # this worker judges a heartbeat 1 s old as stopped
    monkeypatch.setattr(search, "HEARTBEAT_S", 1)
    time.sleep(2)
    (tmp_path / "machine-1").mkdir()
    monkeypatch.chdir(tmp_path / "machine-1")
    result = main_in_process(args, capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="killed", storage=postgresql).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert trials[1].params == trials[0].params and trials[1].system_attrs.get("failed_trial") == 0  # retried, once


@pytest.mark.process
def test_a_server_that_goes_away_mid_study_is_one_line_and_the_run_stays_resumable(
    tmp_path, real_data_dir, real_archive
):
    import subprocess as sp

    from postgres import throwaway_server

    from cifar_lightning.runs.checkpoints import read_checkpoint

    with throwaway_server() as (url, pg_ctl):
        worker = start_worker(tmp_path / "machine", search_args("away", real_data_dir, real_archive, url, long=True))
        wait_for_a_running_trial(url, "away")
        last = tmp_path / "machine" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 120
        while not last.is_file() and time.monotonic() < deadline:  # the first epoch's checkpoint
            time.sleep(0.2)
        sp.run([*pg_ctl, "-m", "immediate", "stop"], check=True, capture_output=True)
        _, err = worker.communicate(timeout=180)
    lines = err.strip().splitlines()
    assert worker.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert (
        lines[-1].startswith("error: the study's storage postgresql+psycopg2://")
        and "run the same command again" in lines[-1]
    )
    assert read_checkpoint(last)["epoch"] < LONG_EPOCHS - 1  # the trial's run folder keeps its last whole epoch


def test_an_enqueued_rate_in_exponent_notation_is_a_number():
    from cifar_lightning.tools.search import parse_enqueued, read_space

    assert parse_enqueued(f"{LR}=1e-6,data.augmentation.shift_px=2", read_space(SPACE)) == {
        LR: 1e-6,
        "data.augmentation.shift_px": 2,
    }


def test_a_space_bound_in_exponent_notation_is_a_number(tmp_path):
    from cifar_lightning.tools.search import read_space

    space = tmp_path / "space.yaml"
    space.write_text(f"{LR}: {{low: 1e-2, high: 1, log: true}}\n")
    assert read_space(space) == {LR: {"low": 0.01, "high": 1.0, "log": True}}
