"""Every logger shows the run: TensorBoard (tags, hparams, figures, read back with its own
EventAccumulator), CSV, W&B offline and MLflow in SQLite (each read back from its own store), a
list of them, and a logger with no folder of its own; each add-on config in configs/logger/."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from cifar_lightning.lightning_cli import run_cli
from cifar_lightning.tools.report import write_report
from harness import CONFIG, PREVIEW_ON, REPO, TINY, data_args, one_line_error

LOGGER_CONFIGS = REPO / "configs" / "logger"
LR_KEY = "model.optimizer.init_args.lr"  # one of the run's settings, as every logger's hyperparameters name it

SCALARS = [
    "train/loss_step",
    "train/loss_epoch",
    "train/acc",
    "val/loss",
    "val/acc",
    "lr",
    "train/device/samples_per_sec",
    "time/epoch_s",
    "hp/best_val_acc",
    "hp/final_val_acc",
    "hp/test_acc",
    "test/acc",
]
IMAGES = ["test/confusion_matrix", "test/misclassified", "test/misclassified_cam", "train/augmentation"]


@pytest.mark.slow
def test_fit_and_test_write_the_tags_hparams_and_figures(tmp_path, monkeypatch, real_data_dir, real_archive):
    monkeypatch.chdir(tmp_path)
    common = [*data_args(real_data_dir, real_archive), *TINY]
    run_cli(["fit", "--config", CONFIG, *common, "--trainer.log_every_n_steps=1", PREVIEW_ON])
    run_dir = tmp_path / "lightning_logs" / "version_0"
    run_cli(
        [
            "test",
            "--config",
            str(run_dir / "config.yaml"),
            *common,
            "--ckpt_path",
            str(run_dir / "checkpoints/last.ckpt"),
        ]
    )

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


@pytest.fixture
def no_network(monkeypatch):
    """This process may open sockets to its own machine only (W&B's local service, say): an attempt to
    reach another address fails the test."""
    import ipaddress
    import socket

    real_connect = socket.socket.connect
    attempts = []

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                local = ipaddress.ip_address(host).is_loopback
            except ValueError:
                local = host == "localhost"
            if not local:
                attempts.append(address)
                raise OSError(f"the test refuses a connection to {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield attempts
    assert attempts == [], f"a logger tried to reach the network: {attempts}"


def fit_and_test(tmp_path, monkeypatch, real_data_dir, real_archive, *settings: str, between=lambda: None) -> Path:
    """A tiny fit and a test of its last checkpoint, logging as ``settings`` say; the run folder.

    ``between`` runs after the fit: what the end of the fit's process would have done.
    """
    monkeypatch.chdir(tmp_path)
    common = [*data_args(real_data_dir, real_archive), *TINY, "--trainer.max_epochs=2"]
    run_cli(["fit", "--config", CONFIG, *settings, *common, "--trainer.log_every_n_steps=1", PREVIEW_ON])
    between()
    (run_dir,) = (tmp_path / "lightning_logs").glob("version_*")
    run_cli(
        [
            "test",
            "--config",
            str(run_dir / "config.yaml"),
            *common,
            "--ckpt_path",
            str(run_dir / "checkpoints/last.ckpt"),
        ]
    )
    return run_dir


def logged_settings(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


@pytest.mark.slow
def test_the_csv_logger_keeps_the_run_folder_its_record_and_the_figures(
    tmp_path, monkeypatch, real_data_dir, real_archive, no_network
):
    run_dir = fit_and_test(
        tmp_path, monkeypatch, real_data_dir, real_archive, "--config", str(LOGGER_CONFIGS / "csv.yaml")
    )
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    # the fit's rows survive the test logging into the same folder (Lightning's own CSVLogger deletes them)
    assert [r["val/acc"] for r in rows if r.get("val/acc")] and [r["test/acc"] for r in rows if r.get("test/acc")]
    assert [r["hp/final_val_acc"] for r in rows if r.get("hp/final_val_acc")] and [
        r["hp/test_acc"] for r in rows if r.get("hp/test_acc")
    ]
    assert yaml.safe_load((run_dir / "hparams.yaml").read_text())[LR_KEY] == 0.1
    assert (run_dir / "config.yaml").is_file() and (run_dir / "test_confusion_matrix.csv").is_file()
    assert all(
        (run_dir / f"test_{name}.png").stat().st_size > 10_000
        for name in ("confusion_matrix", "misclassified", "misclassified_cam")
    )
    assert (run_dir / "train_augmentation.png").stat().st_size > 10_000  # the fit's augmentation preview
    # the report reads the CSV, and writes beside it, not over it
    summary = write_report(run_dir)
    assert summary["epochs"] == 2 and summary["test_acc"] is not None and summary["fit_wall_time_s"] > 0
    assert (run_dir / "report" / "summary.json").is_file() and (run_dir / "metrics.csv").read_text().count("\n") == len(
        rows
    ) + 1


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B offline run file (``run-*.wandb``: a 7-byte header, then LevelDB's log format)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pieces, records = 32 * 1024, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        length, kind = int.from_bytes(data[position + 4 : position + 6], "little"), data[position + 6]
        if left < 7 or (length == 0 and kind == 0):  # the end of a block is padding
            position += left
            continue
        piece, position = data[position + 7 : position + 7 + length], position + 7 + length
        pieces = piece if kind in (1, 2) else pieces + piece  # full, first / middle, last
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
    return records


@pytest.mark.slow
def test_wandb_offline_beside_tensorboard(tmp_path, monkeypatch, real_data_dir, real_archive, no_network):
    import wandb

    settings = yaml.safe_load((LOGGER_CONFIGS / "wandb.yaml").read_text())
    assert settings["trainer"]["logger"][1]["init_args"]["offline"] is True  # nothing is sent without the user's say
    # each command is a W&B run of its own (in one process, a WandbLogger joins the run in progress)
    run_dir = fit_and_test(
        tmp_path,
        monkeypatch,
        real_data_dir,
        real_archive,
        "--config",
        str(LOGGER_CONFIGS / "wandb.yaml"),
        between=wandb.finish,
    )
    wandb.finish()
    assert list(run_dir.glob("events.out.tfevents.*"))  # TensorBoard keeps the run folder
    runs = sorted((tmp_path / "lightning_logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # the fit and the test
    fit_store = json.loads((run_dir / "run.json").read_text())["loggers"][1]
    assert fit_store["logger"] == "WandbLogger" and Path(fit_store["store"]).resolve().parent == runs[0].resolve()
    history, config = [], {}
    for record in wandb_records(next(runs[0].glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "config":
            config.update(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.config.update}
            )
    assert any("val/acc" in h for h in history) and any("hp/final_val_acc" in h for h in history)
    assert config[LR_KEY] == 0.1
    assert yaml.safe_load((runs[0] / "files" / "run-config.yaml").read_text()) == logged_settings(run_dir)
    test_files = {p.name for p in (runs[1] / "files").rglob("*")}
    assert "run-config-test.yaml" in test_files and any(
        name.endswith(".png") for name in test_files
    )  # the test figures


@pytest.mark.slow
def test_mlflow_in_sqlite_beside_tensorboard(tmp_path, monkeypatch, real_data_dir, real_archive, no_network):
    from mlflow.tracking import MlflowClient

    run_dir = fit_and_test(
        tmp_path, monkeypatch, real_data_dir, real_archive, "--config", str(LOGGER_CONFIGS / "mlflow.yaml")
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'lightning_logs' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "cifar_lightning"]
    fit, test = sorted(client.search_runs([experiment.experiment_id]), key=lambda run: run.info.start_time)
    assert json.loads((run_dir / "run.json").read_text())["loggers"][1]["store"].endswith(fit.info.run_id)
    assert client.get_metric_history(fit.info.run_id, "val/acc") and fit.data.metrics["hp/final_val_acc"] >= 0
    assert float(fit.data.params[LR_KEY]) == 0.1
    assert {a.path for a in client.list_artifacts(fit.info.run_id)} == {
        "config.yaml",
        "train",
    }  # train/augmentation.png
    artifacts = client.download_artifacts(fit.info.run_id, "config.yaml", str(tmp_path))
    assert yaml.safe_load(Path(artifacts).read_text()) == logged_settings(run_dir)
    assert "test/acc" in test.data.metrics
    assert {a.path for a in client.list_artifacts(test.info.run_id, "test")} == {
        "test/confusion_matrix.png",
        "test/misclassified.png",
        "test/misclassified_cam.png",
    }


@pytest.mark.slow
def test_a_logger_without_a_folder_gets_a_run_folder_that_resumes_and_reports(
    tmp_path, monkeypatch, real_data_dir, real_archive
):
    """MLflow alone: the run folder is a CSV record in lightning_logs/version_N, which --ckpt_path last finds."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "store").mkdir()
    base = [
        "fit",
        "--config",
        CONFIG,
        *data_args(real_data_dir, real_archive),
        *TINY,
        "--trainer.max_epochs=2",
        "--trainer.logger=lightning.pytorch.loggers.MLFlowLogger",
        f"--trainer.logger.tracking_uri=sqlite:///{tmp_path}/store/m.db",
        f"--trainer.logger.artifact_location={tmp_path}/store/artifacts",
    ]
    run_cli([*base, "--trainer.callbacks+=helpers.StopAfterEpochs", "--trainer.callbacks.epochs=1"])
    run_dir = tmp_path / "lightning_logs" / "version_0"
    loggers = logged_settings(run_dir)["trainer"]["logger"]
    assert [entry["class_path"].rsplit(".", 1)[1] for entry in loggers] == ["KeepingCSVLogger", "MLFlowLogger"]
    resumed = run_cli([*base, "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == 2 and [p.name for p in (tmp_path / "lightning_logs").iterdir()] == [
        "version_0"
    ]
    assert write_report(run_dir)["epochs"] == 2


def test_a_logger_whose_package_is_missing_names_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    from harness import main_in_process

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    result = main_in_process(["fit", "--config", CONFIG, "--config", LOGGER_CONFIGS / "wandb.yaml"], capsys)
    assert "needs the wandb package" in one_line_error(result) and "cifar_lightning[loggers]" in result.stderr
    assert not (tmp_path / "lightning_logs").exists()
