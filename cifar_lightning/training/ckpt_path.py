"""A ``--ckpt_path`` as the command line takes it: read once and checked as data, before LightningCLI parses
its hyperparameters (which imports what they name) or anything is built."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jsonargparse import Namespace

from cifar_lightning.errors import shell_command
from cifar_lightning.runs.checkpoints import read_checkpoint, run_of_checkpoint
from cifar_lightning.runs.resume import check_resume
from cifar_lightning.training.classes import fill_classes
from cifar_lightning.training.module import ImageClassifier
from cifar_lightning.training.trust import check_checkpoint, check_same_network, check_teacher, named_classes, spec_name


def checked_checkpoint(
    ckpt_path: str, subcommand: str, config, settings: Callable[[], dict], classes: Callable[[], tuple[str, ...]]
) -> dict[str, Any]:
    """The checkpoint at ``ckpt_path``, refused unless it names only trusted classes, holds the config's network
    and, resumed, was trained with the same settings (``settings()``: the new config as config.yaml holds it)."""
    checkpoint = read_checkpoint(ckpt_path)
    model = config.get("model")
    model = model.as_dict() if isinstance(model, Namespace) else dict(model or {})
    # the classes this config names are imported by now: the user's own config trusts them
    trusted = {name for _, name in named_classes(model, "model") if isinstance(name, str)}
    trusted |= set(config.get("trusted") or [])
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
