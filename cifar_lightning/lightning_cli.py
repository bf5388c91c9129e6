"""LightningCLI wiring of model, data, trainer and callbacks, nothing more: the Trainer's four verbs.

The CLI is shaped only through LightningCLI's public hooks; what the wiring needs to decide
(run folders, checkpoint checks, error lines) lives in its own module.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from pathlib import Path

import yaml
from jsonargparse import Namespace, lazy_instance
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.callbacks import (
    AugmentationPreview,
    FiniteLossGuard,
    FitSummary,
    HParamsSummary,
    LoggingStepProgressBar,
    PredictionWriter,
    RandomState,
    ResumeHint,
    RunInfo,
    SpeedMonitor,
    TestFigures,
)
from cifar_lightning.callbacks.precision_advice import PrecisionAdvice
from cifar_lightning.data import Augmentation, ImageDataModule
from cifar_lightning.data.datamodule import classes_of
from cifar_lightning.errors import ConfigError, shell_command, user_errors
from cifar_lightning.files import load_yaml, read_yaml
from cifar_lightning.runs import folders as run_folders
from cifar_lightning.runs import loggers as run_loggers
from cifar_lightning.runs.checkpoint_io import AtomicCheckpointIO
from cifar_lightning.runs.checkpoints import find_last_checkpoint, read_checkpoint, run_of_checkpoint
from cifar_lightning.runs.resume import RunFinished, check_resume
from cifar_lightning.training.module import FIT_METRICS, ImageClassifier
from cifar_lightning.training.trust import check_checkpoint, check_same_network, check_teacher, named_classes, spec_name

ATOMIC_CHECKPOINT_IO = f"{AtomicCheckpointIO.__module__}.{AtomicCheckpointIO.__qualname__}"


def is_checkpoint_io(plugin) -> bool:
    """A trainer plugin as the config holds it (a class_path, or a name like "bf16-mixed") that saves checkpoints."""
    class_path = plugin.get("class_path") if hasattr(plugin, "get") else None
    if not class_path:
        return False
    module, _, name = class_path.rpartition(".")
    return issubclass(getattr(importlib.import_module(module), name, object), CheckpointIO)


# The callbacks every run gets besides the config's trainer.callbacks and the two checkpoints: each
# key is on by default and off with --KEY null (docs/callbacks.md says what each does)
SWITCHABLE_CALLBACKS = {
    "random_state": (RandomState, {}),
    "finite_loss_guard": (FiniteLossGuard, {}),
    "fit_summary": (FitSummary, {}),
    "resume_hint": (ResumeHint, {}),
    "prediction_writer": (PredictionWriter, {}),
    "speed_monitor": (SpeedMonitor, {}),
    "hparams_summary": (HParamsSummary, {}),
    "test_figures": (TestFigures, {}),
    "augmentation_preview": (AugmentationPreview, {}),
    "precision_advice": (PrecisionAdvice, {}),
    "lr_monitor": (LearningRateMonitor, {"logging_interval": "step"}),
    "model_summary": (ModelSummary, {"max_depth": 3}),
}


def class_default(class_path: str, parameter: str):
    """The default of ``parameter`` in the signature of the class ``class_path`` names (imported already: the config named it)."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    try:
        return inspect.signature(cls).parameters[parameter].default
    except (TypeError, ValueError, KeyError):
        return inspect.Parameter.empty


def fill_classes(model, classes: tuple[str, ...]) -> None:
    """The data's classes into the model's settings: its ``class_names`` and ``num_classes`` and the
    network's ``num_classes`` (its output width). Settings that name other classes (a config or
    checkpoint of other data) are refused; a network's default count gives way to the data's."""

    def shown(names) -> str:
        return ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")

    names = list(classes)
    network = model.get("network")
    init_args = network.get("init_args") if hasattr(network, "get") else None
    width = init_args.get("num_classes") if hasattr(init_args, "get") else None
    if width is not None and width != len(names) and width == class_default(network["class_path"], "num_classes"):
        width = None  # the class's default, not the config's choice
    stated = [
        (setting, value)
        for setting, value in (
            ("model.class_names", model.get("class_names")),
            ("model.num_classes", model.get("num_classes")),
            ("model.network.init_args.num_classes", width),
        )
        if value is not None and value not in (names, len(names))
    ]
    if stated:
        setting, value = stated[0]
        value = f"{len(value)} classes ({shown(value)})" if isinstance(value, list) else f"{value} classes"
        raise ConfigError(
            f"{setting} gives {value} but the data has {len(names)} ({shown(names)}): the classes come from the data, "
            "so drop the setting, or use the data this config or checkpoint was made for (--data.data_dir, --data.archive, --data.dataset)"
        )
    model["class_names"], model["num_classes"] = names, len(names)
    if hasattr(init_args, "get") and "num_classes" in init_args:
        init_args["num_classes"] = len(names)


def check_monitors(config) -> None:
    """Every metric a callback monitors is one the fit logs. Lightning meets the name only at the first
    validation: EarlyStopping then stops the fit with a traceback, ModelCheckpoint saves no best epoch."""
    named = [("checkpoint.monitor", (config.get("checkpoint") or {}).get("monitor"))]
    callbacks = config["trainer"].get("callbacks") or []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        settings = callback.get("init_args") if hasattr(callback, "get") else None
        if settings is not None and hasattr(settings, "get") and settings.get("monitor") is not None:
            named.append((f"the monitor of trainer.callbacks' {callback.get('class_path')}", settings.get("monitor")))
    for where, metric in named:
        if metric is not None and metric not in FIT_METRICS:
            raise ConfigError(
                f"{where} is {str(metric)[:80]!r}, which a fit never logs: monitor one of {', '.join(FIT_METRICS)}"
            )


class SaveStageConfig(SaveConfigCallback):
    """``config.yaml`` for a new fit; ``config-test.yaml`` etc. for an evaluation logged into a fit's folder.

    A resumed fit keeps the run's own config.yaml: its training settings were checked to be the
    same (``resume.check_resume``), and the file is the record of how the run was trained. An
    evaluation without a logger has no run folder to record into, so it writes none (its
    ``log_dir`` is the working folder).
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        if stage != "fit" and not trainer.loggers:
            self.already_saved = True
        self.config_filename = "config.yaml" if stage == "fit" else f"config-{stage}.yaml"
        log_dir = self.run_dir = (
            trainer.log_dir
        )  # every rank: a broadcast, which save_config (rank zero only) must not make
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


class CifarLightningCLI(LightningCLI):
    def __init__(self, *args, classes_from_data: bool = True, **kwargs) -> None:
        """``classes_from_data``: give the model the data's classes when it is built without a subcommand
        (``build``): the tools that train (lr-find) want them; those that load a run's config.yaml already have them."""
        self.classes_from_data = classes_from_data
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--trusted",
            type=list[str] | None,
            default=None,
            help="full names of classes a --ckpt_path checkpoint may name besides the project's own (and the ones this "
            "config names); loading it imports their code: --trusted+=mypkg.nets.MyNet (docs/python.md, trust)",
        )
        # the run folder's record; it also marks the folder as holding a result, which keeps a failed
        # command from giving the folder back after training began (runs/folders.py): always on
        parser.add_lightning_class_args(RunInfo, "run_info")
        for key, (
            callback,
            settings,
        ) in SWITCHABLE_CALLBACKS.items():  # each shown by --print_config, off with --KEY null
            parser.add_lightning_class_args(callback, key, subclass_mode=True, required=False)
            parser.set_defaults({key: lazy_instance(callback, **settings)})
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
                "last_checkpoint.filename": run_folders.LAST_NAME,
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        # A fresh train loader each epoch, built for that epoch's seed. Lightning builds the first
        # one early (OneCycle asks for the number of steps) before a checkpoint's epoch counter is
        # restored; reloading is what lets a resumed run replay the epoch it stopped in exactly.
        parser.set_defaults({"trainer.reload_dataloaders_every_n_epochs": 1})
        # the layer table is the model_summary callback's (--model_summary null turns it off): the Trainer's
        # own would only print that it skips itself
        parser.set_defaults({"trainer.enable_model_summary": False})

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        # the logger that keeps the run folder goes first, before --ckpt_path last looks for runs there
        run_loggers.arrange(config)
        if subcommand == "fit":
            check_monitors(config)
        augmentation = config.get("data", {}).get("augmentation")
        if augmentation is not None:  # built now (it checks itself), before a run folder or the data exist
            Augmentation(**augmentation.as_dict())
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None:
            return
        if ckpt_path == "last":
            ckpt_path = str(find_last_checkpoint(config))
            config["ckpt_path"] = ckpt_path
        # refused here, before Lightning reads its hyperparameters (LightningCLI parses them into
        # the config next, importing what they name) or anything is built
        checkpoint = read_checkpoint(ckpt_path)
        self.checkpoint = (
            str(Path(ckpt_path).resolve()),
            checkpoint,
        )  # the Trainer's restore uses it (instantiate_trainer)
        model = config.get("model")
        model = model.as_dict() if isinstance(model, Namespace) else dict(model or {})
        # the classes this config names are imported by now: the user's own config trusts them
        trusted = {name for _, name in named_classes(model, "model") if isinstance(name, str)} | set(
            config.get("trusted") or []
        )
        check_checkpoint(checkpoint, ImageClassifier, trusted, ckpt_path)
        check_same_network(
            spec_name((checkpoint.get("hyper_parameters") or {}).get("network")), spec_name(model.get("network"))
        )
        if subcommand == "fit":  # the teacher is built for training only (before_instantiate_classes)
            check_teacher((checkpoint.get("hyper_parameters") or {}).get("distillation"), trusted, ckpt_path)
        run_dir = run_of_checkpoint(ckpt_path)
        if subcommand == "fit" and run_dir is not None:
            # the classes come from the data (before_instantiate_classes), as they did for the run's config.yaml
            fill_classes(config["model"], classes_of(config["data"]))
            # the run's config.yaml is parser.dump's text, so the new settings are compared in that same form
            settings = yaml.safe_load(parser.dump(self.config, skip_none=False, skip_link_targets=False))[subcommand]
            check_resume(run_dir, settings, checkpoint, shell_command())
        # LightningCLI then parses the checkpoint's hyperparameters into the config, reading the file again with
        # torch.load, and no public hook replaces that step: the checked checkpoint's are parsed here (as Lightning
        # 2.6 does), and the path is held back from that step until before_instantiate_classes gives it back
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        if hparams:
            self.config = parser.parse_object({subcommand: {"model": hparams}}, self.config)
        self.held_ckpt_path = ckpt_path
        self.config[subcommand]["ckpt_path"] = None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if getattr(self, "held_ckpt_path", None):
            config["ckpt_path"] = self.held_ckpt_path
        if self.subcommand or self.classes_from_data:
            # the network gets one output per class of the data, checked against the settings a config or a
            # checkpoint's hyperparameters (_parse_ckpt_path) state; the run's config.yaml records them
            fill_classes(config["model"], classes_of(config["data"]))
        if self.subcommand is None:  # run=False (export, lr_find): objects only, no run folder
            return
        plugins = config["trainer"].get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(is_checkpoint_io(p) for p in plugins):
            # never a half-written checkpoint, and a failed write ends the fit in one line; in the
            # config, so the run's config.yaml records it
            config["trainer"]["plugins"] = [*plugins, Namespace(class_path=ATOMIC_CHECKPOINT_IO, init_args=Namespace())]
        if self.subcommand != "fit" and config.get("model", {}).get("distillation") is not None:
            # evaluation does not use the teacher; a checkpoint's hyperparameters may have named one
            config["model"]["distillation"] = None
        if config.get("weights_only") is None:
            # checkpoints are data, not code: refuse pickled objects unless asked otherwise
            config["weights_only"] = True
        run_folders.claim_run_folder(config, config.get("ckpt_path"), fit=self.subcommand == "fit")

    def instantiate_trainer(self, **kwargs):
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        for key in SWITCHABLE_CALLBACKS:
            if key in config and config[key] is None:  # switched off: LightningCLI would hand the Trainer None
                config[key] = Callback()  # Lightning's base class, which does nothing
        # Lightning's default bar reads the step's loss from the device every batch; this one, only at
        # logging steps. Added here, not in the config, so that it is no setting of the run.
        trainer = config.get("trainer", {})
        callbacks = trainer.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if trainer.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs.setdefault("callbacks", [*callbacks, LoggingStepProgressBar()])
        trainer = super().instantiate_trainer(**kwargs)
        if isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            trainer.strategy.checkpoint_io.preloaded = getattr(self, "checkpoint", None)
        return trainer


def run_cli(args: list[str] | None = None, extra_callbacks: list | None = None) -> CifarLightningCLI:
    """Parse ``args`` (default: ``sys.argv``) and run the subcommand; user errors propagate.

    ``extra_callbacks``: objects the trainer gets besides the config's (a search's pruning
    callback, which holds its trial); they are no setting of the run and stay out of its config.yaml.
    """
    return CifarLightningCLI(
        ImageClassifier,
        ImageDataModule,
        # a resumed run logs into its old folder, where config.yaml already is
        save_config_callback=SaveStageConfig,
        save_config_kwargs={"overwrite": True},
        # the module owns its optimizer and OneCycle schedule: no --optimizer/--lr_scheduler that
        # would silently replace them (model.optimizer chooses the optimizer)
        auto_configure_optimizers=False,
        # parse errors raise (main() prints one line) instead of printing the whole usage
        parser_kwargs={"exit_on_error": False},
        trainer_defaults={"callbacks": extra_callbacks} if extra_callbacks else None,
        args=args,
    )


RUN_ONLY_KEYS = ("ckpt_path", "weights_only")  # a fit's config.yaml holds these; run=False parsers do not


def build(config: str, overrides: list[str], classes_from_data: bool = False) -> CifarLightningCLI:
    """Model, data module and trainer from a config file, without running anything (export, lr_find);
    ``classes_from_data``: the model gets the data's classes, as a fit's does."""
    if not Path(config).is_file():
        raise ConfigError(f"config {config} does not exist: pass a run's config.yaml or one in configs/")
    settings = read_yaml(Path(config)) or {}
    for key in RUN_ONLY_KEYS:
        settings.pop(key, None)
    with warnings.catch_warnings():
        # the tool's own command line is not LightningCLI's: `args` is the whole input here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
        return CifarLightningCLI(
            ImageClassifier,
            ImageDataModule,
            save_config_callback=None,
            auto_configure_optimizers=False,
            parser_kwargs={"exit_on_error": False},
            # LightningCLI takes a config as a file or a string in args; a fit's config.yaml also holds
            # ckpt_path and weights_only, which a parser without subcommands refuses, so it goes in as a string without them
            args=["--config", yaml.safe_dump(settings), *overrides],
            run=False,
            classes_from_data=classes_from_data,
        )


def check_config_arguments(argv: list[str]) -> None:
    """Each ``--config`` (a file, or YAML text) is bounded before jsonargparse reads it (``files.check_yaml``)."""
    for i, arg in enumerate(argv):
        value = (
            arg.split("=", 1)[1]
            if arg.startswith("--config=")
            else argv[i + 1]
            if arg == "--config" and i + 1 < len(argv)
            else None
        )
        if value is None:
            continue
        if len(value) < 4096 and "\n" not in value and Path(value).is_file():
            read_yaml(Path(value))
        else:
            load_yaml(value, "the --config text")


def trainer_main(args: list[str] | None = None) -> None:
    """The Trainer's verbs (``cli.main`` sends them here): user errors become one line and exit code 2.

    ``--verbose`` (anywhere on the command line) or ``CIFAR_LIGHTNING_VERBOSE=1`` shows the traceback instead.
    """
    argv = sys.argv[1:] if args is None else args
    # ours, not LightningCLI's (Trainer's arguments would clash with it): read and left out here.
    # sys.argv stays as typed, so DDP processes started from it strip the flag the same way.
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    subcommand = next((a for a in argv if not a.startswith("-")), "fit")
    try:
        with user_errors(verbose, f"{shell_command()} {subcommand}"), warnings.catch_warnings():
            check_config_arguments(argv)
            # the arguments are the command line's, less --verbose
            warnings.filterwarnings(
                "ignore", message="LightningCLI's args parameter is intended to run from within Python"
            )
            try:
                run_cli(argv)
            except Exception:  # a failure, not a stop (SIGTERM, Ctrl-C): a stopped run keeps its folder
                # lightning_logs/ holds runs, not traces of typos. Here, after the Trainer has closed its
                # loggers, not in a callback while they still write.
                for folder in list(run_folders.CLAIMED):
                    run_folders.release_unused(folder)
                raise
    except RunFinished as done:
        print(str(done), file=sys.stderr)
    except SIGTERMException:  # ResumeHint has said how to resume
        sys.exit(128 + 15)  # the shell's convention for "terminated by SIGTERM"
