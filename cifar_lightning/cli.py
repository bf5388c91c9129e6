"""The command line: LightningCLI wiring of model, data, trainer and callbacks, nothing more."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.callbacks import (
    FiniteLossGuard,
    FitSummary,
    HParamsSummary,
    PredictionWriter,
    RandomState,
    ResumeHint,
    RunInfo,
    SpeedMonitor,
    TestFigures,
)
from cifar_lightning.checkpoint_io import AtomicCheckpointIO
from cifar_lightning.data import CIFAR10DataModule
from cifar_lightning.errors import UserError, user_errors
from cifar_lightning.module import ImageClassifier

VERSION_ENV = "CIFAR_LIGHTNING_RUN_VERSION"  # the run folder, handed to DDP processes started later
LAST_NAME = "last"  # checkpoints/last.ckpt, written after every epoch
EVALUATION_KEYS = ("flip_tta", "tta_shift")  # ImageClassifier's test-time settings


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
        parser.add_lightning_class_args(RandomState, "random_state")
        parser.add_lightning_class_args(FiniteLossGuard, "finite_loss_guard")
        parser.add_lightning_class_args(FitSummary, "fit_summary")
        parser.add_lightning_class_args(ResumeHint, "resume_hint")
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_lightning_class_args(SpeedMonitor, "speed_monitor")
        parser.add_lightning_class_args(HParamsSummary, "hparams_summary")
        parser.add_lightning_class_args(TestFigures, "test_figures")
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
        # A fresh train loader each epoch, built for that epoch's seed. Lightning builds the first
        # one early (OneCycle asks for the number of steps) before a checkpoint's epoch counter is
        # restored; reloading is what lets a resumed run replay the epoch it stopped in exactly.
        parser.set_defaults({"trainer.reload_dataloaders_every_n_epochs": 1})
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.add_lightning_class_args(ModelSummary, "model_summary")
        parser.set_defaults({"model_summary.max_depth": 3})

    def _parse_ckpt_path(self) -> None:
        # Lightning applies a checkpoint's saved hyperparameters over the command line; for the
        # test-time views that would silently ignore `test --ckpt_path X --model.tta_shift 0`.
        # They change no weights, so the config and command line decide them.
        subcommand = self.config.get("subcommand")
        model = self.config[subcommand].get("model") if subcommand else None
        chosen = {key: model.get(key) for key in EVALUATION_KEYS} if model is not None else {}
        super()._parse_ckpt_path()
        for key, value in chosen.items():
            self.config[subcommand]["model"][key] = value

    def _instantiate_trainer(self, config: dict, callbacks: list):
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            config["plugins"] = [*plugins, AtomicCheckpointIO()]
        chosen = [*(config.get("callbacks") or []), *callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in chosen):
            callbacks = [*callbacks, _progress_bar()]
        return super()._instantiate_trainer(config, callbacks)

    def before_instantiate_classes(self) -> None:
        if self.subcommand is None:  # run=False (export, lr_find): objects only, no run folder
            return
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
        elif _logger_dir(config) is not None and config["trainer"]["logger"]["init_args"].get("version") is None:
            # Lightning picks max(version_N) + 1 without claiming it, so two runs started at once
            # would share a folder; mkdir claims one atomically. DDP processes that Lightning
            # starts later re-read the command line and must join the launcher's folder.
            if _is_first_process():
                os.environ[VERSION_ENV] = claim_version(_logger_dir(config))
            config["trainer"]["logger"]["init_args"]["version"] = os.environ.get(VERSION_ENV)


def _progress_bar() -> ProgressBar:
    """Rich's bar (epochs, batches, loss, accuracy, img/s) when rich is installed, else tqdm's."""
    try:
        return RichProgressBar()
    except ModuleNotFoundError:
        return TQDMProgressBar()


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


def _is_first_process() -> bool:
    """Not a process that a distributed launcher (Lightning's, torchrun, SLURM) started as rank > 0."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def claim_version(logger_dir: Path) -> str:
    """Create and return the next free ``version_N`` folder under ``logger_dir``."""
    logger_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.split("_")[1]) for p in logger_dir.glob("version_*") if p.name.split("_")[1].isdigit()]
    number = max(taken, default=-1) + 1
    while True:
        try:
            (logger_dir / f"version_{number}").mkdir()
            return f"version_{number}"
        except FileExistsError:  # another run claimed it first
            number += 1


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
        # parse errors raise (main() prints one line) instead of printing the whole usage
        parser_kwargs={"exit_on_error": False},
        args=args,
    )


RUN_ONLY_KEYS = ("ckpt_path", "weights_only")  # a fit's config.yaml holds these; run=False parsers do not


def build(config: str, overrides: list[str]) -> CifarLightningCLI:
    """Model, data module and trainer from a config file, without running anything (export, lr_find)."""
    if not Path(config).is_file():
        raise UserError(f"config {config} does not exist: pass a run's config.yaml or one in configs/")
    settings = yaml.safe_load(Path(config).read_text()) or {}
    for key in RUN_ONLY_KEYS:
        settings.pop(key, None)
    argv, sys.argv[1:] = sys.argv[1:], []  # LightningCLI warns when args and a command line both exist
    try:
        return CifarLightningCLI(
            ImageClassifier,
            CIFAR10DataModule,
            save_config_callback=None,
            parser_kwargs={"exit_on_error": False},
            args=["--config", yaml.safe_dump(settings), *overrides],  # a YAML string is a config too
            run=False,
        )
    finally:
        sys.argv[1:] = argv


def main(args: list[str] | None = None) -> None:
    """The ``python -m cifar_lightning`` entry point: user errors become one line and exit code 2.

    ``--verbose`` (anywhere on the command line) or ``CIFAR_LIGHTNING_VERBOSE=1`` shows the
    traceback instead.
    """
    argv = sys.argv[1:] if args is None else args
    verbose = "--verbose" in argv
    if verbose:
        argv = [a for a in argv if a != "--verbose"]
        if args is None:
            sys.argv[1:] = argv  # LightningCLI reads sys.argv itself
    subcommand = next((a for a in argv if not a.startswith("-")), "fit")
    try:
        with user_errors(verbose, f"python -m cifar_lightning {subcommand}"):
            run_cli(args if args is None else argv)
    except SIGTERMException:  # ResumeHint has said how to resume
        sys.exit(128 + 15)  # the shell's convention for "terminated by SIGTERM"
