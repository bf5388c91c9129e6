"""How a fit is built, from the config to the Trainer: LightningCLI's wiring of model, data, trainer and
callbacks, and nothing more.

The CLI is shaped only through LightningCLI's public hooks; what the wiring needs to decide lives in its own
module: run folders (``runs/``), the classes and the checkpoint's checks
(``training/settings.py``), the run's config record (``callbacks/run_record.py``), error lines (``cli.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import yaml
from jsonargparse import lazy_instance
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from cifar_lightning.callbacks import SWITCHABLE_CALLBACKS, RunInfo, SaveStageConfig
from cifar_lightning.data import Augmentation, ImageDataModule
from cifar_lightning.data.datamodule import prepared_cache
from cifar_lightning.data.sources import read_classes
from cifar_lightning.errors import ConfigError
from cifar_lightning.files import read_yaml
from cifar_lightning.runs import folders as run_folders
from cifar_lightning.runs import loggers as run_loggers
from cifar_lightning.runs.checkpoint_io import AtomicCheckpointIO, with_atomic_io
from cifar_lightning.runs.checkpoints import find_last_checkpoint
from cifar_lightning.training.module import ImageClassifier
from cifar_lightning.training.settings import check_monitors, checked_checkpoint, fill_classes, hyper_parameters
from cifar_lightning.training.trust import qualified_name


class CifarLightningCLI(LightningCLI):
    def __init__(self, *args, classes_from_data: bool = True, **kwargs) -> None:
        """``classes_from_data``: the data's classes for a model built without a subcommand (``build``; lr-find)."""
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
        for key, (callback, settings) in SWITCHABLE_CALLBACKS.items():  # each in --print_config, off with --KEY null
            parser.add_lightning_class_args(callback, key, subclass_mode=True, required=False)
            parser.set_defaults({key: lazy_instance(callback, **settings)})
        # the best epoch (metric names hold "/", so Lightning must not insert them into the file name), and
        # last.ckpt after every epoch from a second, unmonitored checkpoint: Lightning 2.6's save_last writes it
        # only in a step that saved a top-k one, so with save_top_k=1 it is the best epoch, not the last
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        best = {"monitor": "val/acc", "mode": "max", "filename": "epoch{epoch:03d}-val_acc{val/acc:.4f}"}
        last = {"filename": run_folders.LAST_NAME, "monitor": None, "save_top_k": 1, "enable_version_counter": False}
        parser.set_defaults({f"checkpoint.{k}": v for k, v in {**best, "auto_insert_metric_name": False}.items()})
        parser.set_defaults({f"last_checkpoint.{k}": v for k, v in last.items()})
        # a fresh train loader each epoch, built for that epoch's seed: Lightning builds the first one before a
        # checkpoint's epoch counter is restored, and reloading lets a resumed run replay its epoch exactly; the
        # layer table is the model_summary callback's (the Trainer's own would only say that it skips itself)
        parser.set_defaults({"trainer.reload_dataloaders_every_n_epochs": 1, "trainer.enable_model_summary": False})
        # never a half-written checkpoint (kept beside a user's own plugins: with_atomic_io)
        parser.set_defaults({"trainer.plugins": [{"class_path": qualified_name(AtomicCheckpointIO)}]})

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
        # read once and checked before anything is built (a resumed fit's settings in its config.yaml's form); the
        # Trainer's restore gets this copy (instantiate_trainer)
        dumped = lambda: yaml.safe_load(parser.dump(self.config, skip_unset=False, skip_link_targets=False))  # noqa: E731
        checkpoint = checked_checkpoint(ckpt_path, subcommand, config, lambda: dumped()[subcommand], self.classes)
        self.checkpoint = str(Path(ckpt_path).resolve()), checkpoint
        # LightningCLI would parse the hyperparameters from a second torch.load, and no public hook replaces that
        # step: the checked ones are parsed here, and the path is held back until before_instantiate_classes
        if hyper_parameters(checkpoint):
            self.config = parser.parse_object({subcommand: {"model": hyper_parameters(checkpoint)}}, self.config)
        self.held_ckpt_path, self.config[subcommand]["ckpt_path"] = ckpt_path, None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if getattr(self, "held_ckpt_path", None):
            config["ckpt_path"] = self.held_ckpt_path
        if self.subcommand or self.classes_from_data:
            # one output per class of the data, checked against what a config or a checkpoint states. Not
            # link_arguments(apply_on="instantiate"): its targets are left out of the run's config.yaml and
            # --print_config, which must record the classes, and the resume checks need them before instantiation
            fill_classes(config["model"], self.classes())
        if self.subcommand is None:  # run=False (build: lr-find, preview, summary, search): objects only, no run folder
            return
        # never a half-written checkpoint; in the config, so the run's config.yaml records it
        config["trainer"]["plugins"] = with_atomic_io(config["trainer"].get("plugins"))
        if self.subcommand != "fit" and config.get("model", {}).get("distillation") is not None:
            # evaluation does not use the teacher; a checkpoint's hyperparameters may have named one
            config["model"]["distillation"] = None
        if config.get("weights_only") is None:
            # checkpoints are data, not code: refuse pickled objects unless asked otherwise
            config["weights_only"] = True
        run_folders.claim_run_folder(config, config.get("ckpt_path"), fit=self.subcommand == "fit")

    def classes(self) -> tuple[str, ...]:
        """The data's classes, from its cache, found or decoded once per command: the data module gets it too."""
        if getattr(self, "cache", None) is None:
            subcommand = self.config.get("subcommand")
            self.cache = prepared_cache((self.config[subcommand] if subcommand else self.config)["data"])
        return read_classes(self.cache)

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if getattr(self.datamodule, "cache", False) is None:  # checked while parsing: not again
            self.datamodule.cache = getattr(self, "cache", None)

    def instantiate_trainer(self, **kwargs):
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        settings = config.get("trainer", {})
        callbacks = settings.get("callbacks") or []
        bars = [c for c in (callbacks if isinstance(callbacks, list) else [callbacks]) if isinstance(c, ProgressBar)]
        if settings.get("enable_progress_bar") is False or bars:  # Lightning refuses a bar then, or a second one
            config["progress_bar"] = None
        for key in SWITCHABLE_CALLBACKS:
            if key in config and config[key] is None:  # switched off: LightningCLI would hand the Trainer None
                config[key] = Callback()  # Lightning's base class, which does nothing
        trainer = super().instantiate_trainer(**kwargs)
        if isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            trainer.strategy.checkpoint_io.preloaded = getattr(self, "checkpoint", None)
        return trainer


def run_cli(args: list[str] | None = None, extra_callbacks: list | None = None) -> CifarLightningCLI:
    """Parse ``args`` (default: ``sys.argv``) and run the subcommand; user errors propagate. ``extra_callbacks``:
    objects the trainer gets besides the config's (a search's pruner), no setting of the run."""
    return CifarLightningCLI(
        ImageClassifier,
        ImageDataModule,
        save_config_callback=SaveStageConfig,  # a resumed run logs into its old folder, where config.yaml is
        save_config_kwargs={"overwrite": True},
        # the module owns its optimizer and OneCycle schedule: no --optimizer that would silently replace them
        auto_configure_optimizers=False,
        parser_kwargs={"exit_on_error": False},  # parse errors raise (cli.py prints one line), no usage dump
        trainer_defaults={"callbacks": extra_callbacks} if extra_callbacks else None,
        args=args,
    )


RUN_ONLY_KEYS = ("ckpt_path", "weights_only")  # a fit's config.yaml holds these; run=False parsers do not


def build(config: str, overrides: list[str], classes_from_data: bool = False) -> CifarLightningCLI:
    """Model, data module and trainer from a config file, without running anything (lr-find, preview, summary, search)."""
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
            # as text without the run-only keys, which a parser without subcommands refuses
            args=["--config", yaml.safe_dump(settings), *overrides],
            run=False,
            classes_from_data=classes_from_data,
        )
