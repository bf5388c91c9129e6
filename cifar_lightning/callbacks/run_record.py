"""Provenance of a run: ``run.json`` (command, commit, versions, data copy, machine) and
``validation_images.txt``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import lightning
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from cifar_lightning.errors import shell_command
from cifar_lightning.files import read_json
from cifar_lightning.runs import folders as run_folders
from cifar_lightning.runs import loggers as run_loggers
from cifar_lightning.runs import provenance

RUN_INFO = "run.json"
HELD_OUT = "validation_images.txt"  # train/<class>/<NNNN>, one a line


class RunInfo(Callback):
    """Writes ``run.json`` (command, commit, versions, data, machine), and marks the run folder as holding a result
    from the first step (before it, a failed command gives the folder back)."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_dir = trainer.log_dir  # every rank: under DDP it is a broadcast from rank 0
        if log_dir is None or not trainer.is_global_zero:
            return
        path = Path(log_dir) / RUN_INFO
        previous = read_json(path, "the run's record") if path.is_file() else {}
        previous = previous if isinstance(previous, dict) else {}
        start = {
            "started": time.time(),  # seconds since the epoch; the report's clock starts here
            "command": " ".join([shell_command(), *sys.argv[1:]]),
            **provenance.commit(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "data": provenance.data_copy(trainer.datamodule),
            "machine": {
                **provenance.machine(),
                "accelerator": type(trainer.accelerator).__name__,
                "precision": str(trainer.precision),
            },
            "parameters": sum(p.numel() for p in pl_module.parameters()),
            # where each logger keeps what it was sent (the first one keeps this folder)
            "loggers": [
                {"logger": type(logger).__name__, "store": run_loggers.store_of(logger)} for logger in trainer.loggers
            ],
            "data_preparation_s": getattr(trainer.datamodule, "preparation_seconds", None),
            "found": provenance.data_found(trainer.datamodule, getattr(pl_module, "tta", "none")),
        }
        print("\n".join(provenance.found_lines(start["found"])), flush=True)  # before the first step
        # a resumed run appends its own start, so the record shows every command that wrote the run
        starts = previous.get("starts") if isinstance(previous.get("starts"), list) else []
        starts = [*starts, start]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**start, "starts": starts}, indent=2) + "\n")
        held_out = getattr(trainer.datamodule, "held_out", None)
        if held_out:  # which images validation used, by identity: comparable across sources
            (path.parent / HELD_OUT).write_text("\n".join(held_out) + "\n")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if batch_idx == 0:  # the folder holds a result from the first step on (a resumed epoch starts at 0 too)
            run_folders.mark_trained(trainer.log_dir)


class SaveStageConfig(SaveConfigCallback):
    """``config.yaml`` for a new fit (a resumed one keeps its own), ``config-<stage>.yaml`` for an evaluation logged
    into a run folder, none without a logger."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        if stage != "fit" and not trainer.loggers:
            self.already_saved = True
        self.config_filename = "config.yaml" if stage == "fit" else f"config-{stage}.yaml"
        # every rank: a broadcast, which save_config (rank zero only) must not make
        log_dir = self.run_dir = trainer.log_dir
        if not self.already_saved and stage == "fit" and log_dir is not None:
            # rank zero's view, before it writes the file: every rank then takes the same branch
            resumed = trainer.strategy.broadcast((Path(log_dir) / "config.yaml").is_file())
            if resumed:
                if trainer.is_global_zero:  # a resumed run's other stores (a new W&B or MLflow run) get its config too
                    self.save_config(trainer, pl_module, stage)
                self.already_saved = True
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        """The saved config file, into every logger's store; one line for a logger that takes no files."""
        path = Path(self.run_dir) / self.config_filename
        for logger in trainer.loggers:
            if not run_loggers.send_file(logger, path):
                rank_zero_info(f"{type(logger).__name__} takes no files: the run's config is {path}")
