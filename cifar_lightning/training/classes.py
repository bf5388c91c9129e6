"""The classes a model is built for: the data's, checked against what a config or a checkpoint states."""

from __future__ import annotations

import importlib
import inspect

from cifar_lightning.errors import ConfigError


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
