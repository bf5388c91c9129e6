"""What the CLI settles in a parsed config before anything is built: the data's classes, the metrics callbacks
monitor, and a ``--ckpt_path`` read once and checked as data (before LightningCLI parses its hyperparameters,
which imports what they name)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from jsonargparse import Namespace

from cifar_lightning.errors import ConfigError, shell_command
from cifar_lightning.runs.checkpoints import read_checkpoint, run_of_checkpoint
from cifar_lightning.runs.resume import check_resume
from cifar_lightning.training.module import FIT_METRICS, ImageClassifier
from cifar_lightning.training.trust import (
    check_checkpoint,
    check_same_network,
    check_teacher,
    config_classes,
    spec_name,
)


def class_default(class_path: str, parameter: str):
    """The default of ``parameter`` in the signature of the class ``class_path`` names (imported already: the config named it)."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    try:
        return inspect.signature(cls).parameters[parameter].default
    except (TypeError, ValueError, KeyError):
        return inspect.Parameter.empty


def fill_classes(model, classes: tuple[str, ...]) -> None:
    """The data's classes into ``model.class_names``, ``model.num_classes`` and the network's ``num_classes``;
    a setting naming other classes is refused, a network's default count gives way."""

    def shown(names) -> str:
        return ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")

    names = list(classes)
    network = model.get("network")  # parsed: a class_path Namespace with its init_args
    init_args = network.get("init_args") if isinstance(network, Namespace) else None
    width = init_args.get("num_classes") if isinstance(init_args, Namespace) else None
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
    if isinstance(init_args, Namespace) and "num_classes" in init_args:
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


def checked_checkpoint(
    ckpt_path: str, subcommand: str, config, settings: Callable[[], dict], classes: Callable[[], tuple[str, ...]]
) -> dict[str, Any]:
    """The checkpoint at ``ckpt_path``, refused unless it names only trusted classes, holds the config's network
    and, resumed, was trained with the same settings (``settings()``: the new config as config.yaml holds it)."""
    checkpoint = read_checkpoint(ckpt_path)
    model = config.get("model")
    model = model.as_dict() if isinstance(model, Namespace) else dict(model or {})
    # the classes this config names are imported by now: the user's own config trusts them
    trusted = config_classes(model) | set(config.get("trusted") or [])
    check_checkpoint(checkpoint, ImageClassifier, trusted, ckpt_path)
    saved = checkpoint.get("hyper_parameters") or {}
    check_same_network(spec_name(saved.get("network")), spec_name(model.get("network")))
    if subcommand == "fit":  # the teacher is built for training only
        check_teacher(saved.get("distillation"), trusted, ckpt_path)
    run_dir = run_of_checkpoint(ckpt_path)
    if subcommand == "fit" and run_dir is not None:
        # the classes come from the data, as they did for the run's config.yaml
        fill_classes(config["model"], classes())
        check_resume(run_dir, settings(), checkpoint, shell_command())
    return checkpoint


def hyper_parameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checked checkpoint's hyperparameters as LightningCLI 2.6 parses them into the config's ``model``."""
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    if "_class_path" in hparams:
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    return hparams
