"""The command line: LightningCLI wiring of model, data, trainer and callbacks, nothing more."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from cifar_lightning.callbacks import FiniteLossGuard, FitSummary, PredictionWriter, ResumeHint, RunInfo
from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.errors import UserError
from cifar_lightning.module import ImageClassifier

VERBOSE_ENV = "CIFAR_LIGHTNING_VERBOSE"  # set to 1 for tracebacks on user errors
LAST_NAME = "last"  # checkpoints/last.ckpt, written after every epoch


class SaveStageConfig(SaveConfigCallback):
    """``config.yaml`` for fit; ``config-test.yaml`` etc. for an evaluation logged into a fit's folder."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        self.config_filename = "config.yaml" if stage == "fit" else f"config-{stage}.yaml"
        super().setup(trainer, pl_module, stage)


class CifarLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.classes", "model.class_names", compute_fn=list, apply_on="instantiate")
        parser.add_lightning_class_args(RunInfo, "run_info")
        parser.add_lightning_class_args(FiniteLossGuard, "finite_loss_guard")
        parser.add_lightning_class_args(FitSummary, "fit_summary")
        parser.add_lightning_class_args(ResumeHint, "resume_hint")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                # metric names contain "/", so Lightning must not insert them into the file name
                "checkpoint.filename": "epoch{epoch:03d}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        # Lightning 2.6 writes save_last's last.ckpt only in a step where a top-k checkpoint was
        # saved, so with save_top_k=1 it is the best epoch, not the last. A second, unmonitored
        # checkpoint overwrites last.ckpt after every epoch instead.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": LAST_NAME,
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(ModelSummary, "model_summary")
        parser.set_defaults({"model_summary.max_depth": 3})

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if config.get("weights_only") is None:
            # checkpoints are data, not code: refuse pickled objects unless asked otherwise
            config["weights_only"] = True
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            ckpt_path = str(find_last_checkpoint(config))
            config["ckpt_path"] = ckpt_path
        elif ckpt_path and not Path(ckpt_path).is_file():
            raise UserError(f"checkpoint {ckpt_path} does not exist: check --ckpt_path, or use --ckpt_path last")
        version = _run_version(config, ckpt_path) if ckpt_path else None
        if version is not None:
            # a resumed fit continues its curves, and an evaluation lands beside the run it evaluates
            config["trainer"]["logger"]["init_args"]["version"] = version


def _logger_dir(config) -> Path | None:
    """``save_dir/name`` of the configured TensorBoardLogger, or None for another logger."""
    logger = config["trainer"].get("logger")
    if not logger or isinstance(logger, (bool, list)) or "TensorBoardLogger" not in str(logger.get("class_path")):
        return None
    args = logger["init_args"]
    return Path(args.get("save_dir") or ".") / (args.get("name") or "lightning_logs")


def _run_version(config, ckpt_path: str) -> str | None:
    """``version_N`` when the checkpoint lives in ``<logger dir>/version_N/checkpoints/``."""
    logger_dir = _logger_dir(config)
    path = Path(ckpt_path).resolve()
    if logger_dir is None or config["last_checkpoint"].get("dirpath") or path.parent.name != "checkpoints":
        return None
    return path.parent.parent.name if path.parent.parent.parent == logger_dir.resolve() else None


def find_last_checkpoint(config) -> Path:
    """Resolve ``--ckpt_path last`` across runs: Lightning alone looks only in the new run's folder."""
    dirpath = config["last_checkpoint"].get("dirpath")
    logger_dir = _logger_dir(config)
    name = f"{LAST_NAME}.ckpt"
    if dirpath:
        found = [Path(dirpath) / name]
    elif logger_dir is not None:
        found = list(logger_dir.glob(f"*/checkpoints/{name}"))
    else:
        found = list(Path(config["trainer"].get("default_root_dir") or ".").glob(f"**/checkpoints/{name}"))
    found = [p for p in found if p.is_file()]
    if not found:
        where = dirpath or logger_dir or "the default root dir"
        raise UserError(f"--ckpt_path last: no last.ckpt under {where}; pass a checkpoint file, or fit without it")
    return max(found, key=lambda p: p.stat().st_mtime)


def run_cli(args: list[str] | None = None) -> CifarLightningCLI:
    """Parse ``args`` (default: ``sys.argv``) and run the subcommand; user errors propagate."""
    return CifarLightningCLI(
        ImageClassifier,
        CIFAR10DataModule,
        # a resumed run logs into its old folder, where config.yaml already is
        save_config_callback=SaveStageConfig,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def main(args: list[str] | None = None) -> None:
    """The ``python -m cifar_lightning`` entry point: user errors become one line and exit code 2."""
    try:
        run_cli(args)
    except (UserError, MisconfigurationException) as err:  # Lightning's own "these settings conflict"
        if os.environ.get(VERBOSE_ENV):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except pickle.UnpicklingError as err:  # torch.load(weights_only=True) met a non-tensor object
        if os.environ.get(VERBOSE_ENV):
            raise
        first = str(err).strip().splitlines()[0]
        print(
            f"error: the checkpoint holds pickled objects that are not tensors or plain values, so it was refused "
            f"unread ({first}); load only checkpoints you trust, and re-save them with this project",
            file=sys.stderr,
        )
        sys.exit(2)
    except SIGTERMException:  # ResumeHint has said how to resume
        sys.exit(128 + 15)  # the shell's convention for "terminated by SIGTERM"
