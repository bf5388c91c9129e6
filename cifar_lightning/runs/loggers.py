"""The run's loggers: which one keeps the run folder, and what each logger's store can take.

Lightning puts checkpoints and ``config.yaml`` under its first logger, so ``arrange`` puts a TensorBoard or CSV
logger first (adding a CSV record in ``lightning_logs/`` beside W&B or MLflow alone): the run folder is its
``version_N``.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import shutil
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from cifar_lightning.errors import ConfigError
from cifar_lightning.files import read_yaml

FOLDER_LOGGERS = (TensorBoardLogger, CSVLogger)  # a save_dir/name/version_N folder of their own


class KeepingCSVLogger(CSVLogger):
    """Lightning's CSVLogger, continuing a run folder's metrics.csv and hparams.yaml, which Lightning's writer
    replaces when it starts (no setting keeps them): the rows and columns are put back once it has."""

    @property
    def experiment(self):
        if getattr(self, "kept_record", False):
            return super().experiment
        self.kept_record = True
        metrics, hparams = Path(self.log_dir) / "metrics.csv", Path(self.log_dir) / "hparams.yaml"
        kept = metrics.read_bytes() if metrics.is_file() else None
        writer = super().experiment
        if not hasattr(writer, "metrics_keys"):  # a rank other than zero gets a dummy
            return writer
        if kept is not None:
            metrics.write_bytes(kept)
            with metrics.open(newline="") as f:
                writer.metrics_keys = sorted(next(csv.reader(f), []))
        if hparams.is_file():
            saved = read_yaml(hparams, "hyperparameters")
            writer.hparams.update(saved if isinstance(saved, dict) else {})
        return writer


def class_path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


RECORD_LOGGER = class_path_of(KeepingCSVLogger)
RECORD_NAME = "lightning_logs"  # TensorBoard's default name too: run folders stay lightning_logs/version_N
# a logger class's name -> the package it imports, and the extra of this project that installs it
PACKAGES = {
    "WandbLogger": ("wandb", "pip install 'cifar_lightning[loggers]'"),
    "MLFlowLogger": ("mlflow", "pip install 'cifar_lightning[loggers]'"),
    "CometLogger": ("comet_ml", "pip install comet-ml"),
    "NeptuneLogger": ("neptune", "pip install neptune"),
}


def logger_class(entry) -> type | None:
    """The class a config's logger entry (``class_path`` + ``init_args``) names, or None for another value."""
    class_path = entry.get("class_path") if hasattr(entry, "get") else None
    if not class_path:
        return None
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name, None)


def entries(config) -> list:
    """The configured loggers as a list: [] for none (``false``) or Lightning's default (``true``/unset)."""
    logger = config["trainer"].get("logger")
    if logger is None or isinstance(logger, bool):
        return []
    return list(logger) if isinstance(logger, list) else [logger]


def check_packages(loggers: list) -> None:
    """A logger whose package is missing is named with the command that installs it, before anything runs."""
    for entry in loggers:
        name = str(entry.get("class_path", "")).rpartition(".")[2]
        package, install = PACKAGES.get(name, (None, None))
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(f"trainer.logger {name} needs the {package} package, which is not installed: {install}")


def arrange(config) -> None:
    """Put the logger that keeps the run folder first; add a CSV record when no logger in the list has a folder."""
    loggers = entries(config)
    if not loggers:
        return
    check_packages(loggers)
    for entry in loggers:
        if logger_class(entry) is CSVLogger:  # the same logger, which keeps the run's metrics.csv
            entry["class_path"] = RECORD_LOGGER
    keepers = [entry for entry in loggers if issubclass(logger_class(entry) or object, FOLDER_LOGGERS)]
    if keepers:
        loggers = [keepers[0], *(entry for entry in loggers if entry is not keepers[0])]
    else:
        root = config["trainer"].get("default_root_dir") or "."
        loggers = [
            Namespace(class_path=RECORD_LOGGER, init_args=Namespace(save_dir=str(root), name=RECORD_NAME)),
            *loggers,
        ]
    config["trainer"]["logger"] = loggers if len(loggers) > 1 else loggers[0]


def store_of(logger: Logger) -> str:
    """Where a logger keeps what it was sent, in words a user can open."""
    if isinstance(logger, FOLDER_LOGGERS):
        return str(logger.log_dir)
    if isinstance(logger, WandbLogger):
        return str(logger.experiment.dir)
    if isinstance(logger, MLFlowLogger):
        return f"MLflow experiment {logger.experiment_id}, run {logger.run_id}"
    return type(logger).__name__


def send_file(logger: Logger, path: Path) -> bool:
    """Copy a file of the run (its config) into the logger's store; False for a logger that takes no files."""
    if isinstance(logger, FOLDER_LOGGERS):
        folder = Path(logger.log_dir)
        if folder.resolve() != path.parent.resolve():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / path.name)
        return True
    if isinstance(logger, WandbLogger):
        # a copy under the run's files, named so that it is not W&B's own config.yaml
        copy = Path(logger.experiment.dir) / f"run-{path.name}"
        shutil.copyfile(path, copy)
        logger.experiment.save(str(copy), base_path=str(copy.parent), policy="now")
        return True
    if isinstance(logger, MLFlowLogger):
        logger.experiment.log_artifact(logger.run_id, str(path))
        return True
    return False


def send_figure(logger: Logger, tag: str, figure, step: int) -> bool:
    """Log a matplotlib figure to the logger; False for a logger that takes no images."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_figure(tag, figure, step, close=False)
        logger.experiment.flush()
        return True
    if isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[figure_pixels(figure)], step=step)
        return True
    if isinstance(logger, MLFlowLogger):
        logger.experiment.log_figure(logger.run_id, figure, f"{tag}.png")
        return True
    return False


def figure_pixels(figure):
    """A drawn figure as an H x W x 3 uint8 array, the form every image logger takes."""
    import numpy as np

    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
