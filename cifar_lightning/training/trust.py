"""A checkpoint is data: what it may make the loader import, build and touch, checked before any of it happens.

jsonargparse imports whatever a ``class_path`` names, so every class name a checkpoint holds is compared, whole,
with those allowed at its place (``ALLOWED``) or trusted by the user. Then the network is built on the meta
device and compared with the saved tensors, so no setting allocates more than the checkpoint's own weights.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import Any

import torch
from torch import nn

from cifar_lightning.data.preprocessing import check_preprocessing
from cifar_lightning.errors import EDITED, CheckpointError
from cifar_lightning.models import CompactNet, ResidualCompactNet, SeedNet
from cifar_lightning.runs.checkpoints import read_checkpoint

NETWORK_PREFIX = "network."  # ImageClassifier keeps its network under this state_dict prefix
INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"  # what LightningCLI records for load_from_checkpoint
MODULE_CLASS = "cifar_lightning.training.module.ImageClassifier"
DISTILLATION_CLASS = "cifar_lightning.training.Distillation"  # also under its defining module's name


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _names(classes: Iterable[type], package: str) -> dict[str, type]:
    """Each class under its defining module's name and under the package that re-exports it."""
    return {name: cls for cls in classes for name in (qualified_name(cls), f"{package}.{cls.__name__}")}


NETWORKS = _names((SeedNet, CompactNet, ResidualCompactNet), "cifar_lightning.models")
OPTIMIZERS = _names(
    (
        cls
        for name, cls in vars(torch.optim).items()
        if not name.startswith("_")
        and isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    ),
    "torch.optim",
)
# place in the hyperparameters -> (the names allowed there, how the refusal names them)
ALLOWED = {
    "network": (
        set(NETWORKS),
        "the project's networks ("
        + ", ".join(sorted({f"cifar_lightning.models.{c.__name__}" for c in NETWORKS.values()}))
        + ")",
    ),
    "optimizer": (set(OPTIMIZERS), "torch.optim's optimizers"),
    "distillation": ({DISTILLATION_CLASS, "cifar_lightning.training.distillation.Distillation"}, DISTILLATION_CLASS),
    "distillation.init_args.teacher": (set(NETWORKS), "the project's networks"),
}
CLASS_KEYS = ("class_path", "_class_path")  # a mapping holding one of these names a class to import


def trusted_names(trusted: Iterable[str | type] | str | None) -> set[str]:
    """``trusted=`` as full class names: strings as given, classes by their defining module."""
    if trusted is None:
        return set()
    if isinstance(trusted, (str, type)):
        trusted = [trusted]
    return {t if isinstance(t, str) else qualified_name(t) for t in trusted}


def _refusal(where: str, place: str, name: Any, allowed: str) -> CheckpointError:
    if not isinstance(name, str):
        return CheckpointError(f"{where} names {str(name)[:80]!r} as its {place}, which is not a class name: {EDITED}")
    return CheckpointError(
        f"{where} names {name} as its {place}, which is not one of {allowed}; nothing was imported. "
        f"If you trust that code, load with trusted=[{name!r}] (Python) or --trusted+={name} (command line)"
    )


def _allowed(name: Any, allowed: set[str], trusted: set[str]) -> bool:
    return isinstance(name, str) and (name in allowed or name in trusted)


def named_classes(value: Any, place: str) -> Iterator[tuple[str, Any]]:
    """(place, name) for each class that ``value`` names, nested ones included."""
    if isinstance(value, str):
        if place in ALLOWED:  # a typed class setting takes a bare name too, and jsonargparse imports it
            yield place, value
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from named_classes(item, f"{place}[{i}]")
    elif isinstance(value, dict):
        for key in CLASS_KEYS:
            if key in value:
                yield place, value[key]
        for key, item in value.items():
            if key not in CLASS_KEYS:
                yield from named_classes(item, f"{place}.{key}")


def config_classes(model: dict) -> set[str]:
    """The classes a config's ``model`` names: a config is code, so a checkpoint may name them too."""
    return {name for _, name in named_classes(model, "model") if isinstance(name, str)}


def init_settings(module_class: type) -> set[str]:
    """The settings a LightningModule class takes: its ``__init__``'s keyword arguments."""
    return set(inspect.signature(module_class.__init__).parameters) - {"self"}


def check_names(hparams: Any, trusted: set[str], where: str, settings: set[str]) -> None:
    """Refuse any class the hyperparameters name that is not allowed at its place, before anything is imported,
    and any setting outside ``settings`` (the module class's own)."""
    if hparams is None:
        return
    if not isinstance(hparams, dict):
        raise CheckpointError(
            f"{where} holds hyper_parameters of type {type(hparams).__name__}, not settings: it was not written by this project"
        )
    instantiator = hparams.get("_instantiator")
    if instantiator is not None and not _allowed(instantiator, {INSTANTIATOR}, trusted):
        raise _refusal(where, "_instantiator", instantiator, INSTANTIATOR)
    module_class = hparams.get("_class_path")
    if module_class is not None and not _allowed(module_class, {MODULE_CLASS}, trusted):
        raise _refusal(where, "module class", module_class, MODULE_CLASS)
    for key, value in hparams.items():
        if key in ("_instantiator", "_class_path"):
            continue
        for place, name in named_classes(value, str(key)):
            allowed, described = ALLOWED.get(place, (set(), "the classes this project builds there (none)"))
            if not _allowed(name, allowed, trusted):
                raise _refusal(where, place, name, described)
    if module_class in (None, MODULE_CLASS):
        unknown = sorted(str(k) for k in hparams if k not in settings and k not in ("_instantiator", "_class_path"))
        if unknown:
            raise CheckpointError(
                f"{where} holds settings ImageClassifier does not take ({', '.join(unknown[:5])}): it was written by another version of this project, or edited"
            )


def spec_name(spec: Any) -> str | None:
    return spec if isinstance(spec, str) else spec.get("class_path") if isinstance(spec, dict) else None


def same_class(a: str | None, b: str | None) -> bool:
    """Two full names of one class: equal, or two names of the same project network (its module and the package)."""
    return a == b or (a in NETWORKS and NETWORKS[a] is NETWORKS.get(b))


def build_network(spec: Any, trusted: set[str], where: str, place: str = "network", device: str = "meta") -> nn.Module:
    """The network ``spec`` names, its name checked first; on the meta device (no memory) unless ``device``."""
    name = spec_name(spec)
    allowed, described = ALLOWED["network"]
    if not _allowed(name, allowed, trusted):
        raise _refusal(where, place, name, described)
    if isinstance(spec, dict):
        args = spec.get("init_args") or {}
        if not isinstance(args, dict):
            raise CheckpointError(f"{where}: the {place}'s init_args are a {type(args).__name__}, not settings")
    else:
        args = {}
    if name in NETWORKS:
        cls = NETWORKS[name]
    else:  # trusted by the user: importing it is what they asked for
        module, _, attribute = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as err:
            raise CheckpointError(
                f"{where} names {name} as its {place}, which cannot be imported here ({err})"
            ) from None
    try:
        with torch.device(device):
            return cls(**args)
    except Exception as err:  # noqa: BLE001 - any hostile setting, any error its constructor raises
        first = " ".join(str(err).split())[:160]
        raise CheckpointError(
            f"{where}: its {place} {name} cannot be built from init_args {args!r} ({type(err).__name__}: {first})"
        ) from None


def check_shapes(network: nn.Module, state_dict: Any, where: str, place: str = "network", hint: str = EDITED) -> None:
    """The saved tensors are exactly the ones ``network`` has, shape for shape."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{where}: its state_dict is not a mapping of tensors")
    saved = {
        k[len(NETWORK_PREFIX) :]: v
        for k, v in state_dict.items()
        if isinstance(k, str) and k.startswith(NETWORK_PREFIX)
    }
    expected = network.state_dict()
    missing = sorted(expected.keys() - saved.keys())
    # the module's only state is its network's (its metrics keep none): anything else is foreign
    unexpected = sorted(
        [*(saved.keys() - expected.keys()), *(str(k) for k in state_dict if not str(k).startswith(NETWORK_PREFIX))]
    )
    wrong = [
        k
        for k in expected
        if k in saved and (not isinstance(saved[k], torch.Tensor) or saved[k].shape != expected[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}")
        if wrong:
            k = wrong[0]
            got = tuple(saved[k].shape) if isinstance(saved[k], torch.Tensor) else type(saved[k]).__name__
            parts.append(f"{k} is {got}, the {place} has {tuple(expected[k].shape)}")
        raise CheckpointError(f"{where}: its weights do not fit the {place} ({'; '.join(parts)}): {hint}")


def output_classes(network: nn.Module, input_size: tuple[int, int], where: str) -> int:
    """How many logits ``network`` gives for one image, worked out on the meta device."""
    try:
        with torch.no_grad():
            out = network.eval()(torch.empty(1, 3, *input_size, device="meta"))
    except Exception as err:  # noqa: BLE001 - a network that cannot run on the meta device
        raise CheckpointError(
            f"{where}: its network cannot be checked on the meta device ({type(err).__name__}: {err})"
        ) from None
    return int(out.shape[-1])


def check_finite(state_dict: dict, where: str) -> None:
    """Every floating tensor of the weights is finite: NaN weights would answer NaN for every class, silently."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(
                f"{where}: its weight {key} holds NaN or infinite values (the training diverged): "
                "use a checkpoint from before it did"
            )


# optimizer states that are one value per parameter element (SGD, Adam, AdamW, RMSprop, Adagrad, ...)
PER_ELEMENT_STATES = (
    "momentum_buffer",
    "exp_avg",
    "exp_avg_sq",
    "max_exp_avg_sq",
    "square_avg",
    "acc_delta",
    "sum",
    "ax",
    "prev",
    "grad_avg",
)


def check_optimizer_states(checkpoint: dict, parameters: list[torch.Tensor], where: str) -> None:
    """The saved optimizer states fit their parameters, in one group (torch would fail mid-step with a traceback)."""
    for saved in checkpoint.get("optimizer_states") or []:
        groups = saved.get("param_groups") if isinstance(saved, dict) else None
        states = saved.get("state") if isinstance(saved, dict) else None
        if not isinstance(groups, list) or not isinstance(states, dict) or not all(isinstance(g, dict) for g in groups):
            raise CheckpointError(f"{where}: its optimizer state is not one torch wrote: {EDITED}")
        ids = [i for g in groups for i in (g.get("params") or [])]
        if len(ids) != len(parameters):
            raise CheckpointError(
                f"{where}: its optimizer state covers {len(ids)} parameters, the network has {len(parameters)}: {EDITED}"
            )
        if len(groups) != 1:
            raise CheckpointError(
                f"{where}: its optimizer has {len(groups)} parameter groups, this model builds one: {EDITED}"
            )
        by_id = dict(zip(ids, parameters))
        for index, entry in states.items():
            param = by_id.get(index)
            if param is None or not isinstance(entry, dict):
                raise CheckpointError(
                    f"{where}: its optimizer state names parameter {str(index)[:20]}, which it does not hold: {EDITED}"
                )
            for name, value in entry.items():
                if not isinstance(value, torch.Tensor) or value.ndim == 0:
                    continue
                fits = value.shape == param.shape if name in PER_ELEMENT_STATES else value.numel() <= param.numel()
                if not fits:
                    raise CheckpointError(
                        f"{where}: its optimizer's {name} for a {tuple(param.shape)} parameter is {tuple(value.shape)}: {EDITED}"
                    )


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    else:
        yield path, value


def check_loop_state(checkpoint: dict, where: str) -> None:
    """The loop state a resumed fit restores: mappings of counters, each a count (the epoch seeds the data)."""
    loops = checkpoint.get("loops")
    if loops is None:
        return
    if not isinstance(loops, dict) or not all(
        isinstance(v, dict) and all(isinstance(s, dict) for s in v.values()) for v in loops.values()
    ):
        raise CheckpointError(f"{where}: its loop state is not one Lightning wrote: {EDITED}")
    for path, value in _leaves(loops, "loops"):
        if "progress" not in path and not path.endswith("_batches_that_stepped"):
            continue
        count = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not (isinstance(value, bool) if path.endswith("is_last_batch") else count):
            raise CheckpointError(f"{where}: its loop counter {path} is {str(value)[:40]!r}, not a count: {EDITED}")


def check_callback_files(checkpoint: dict, where: str) -> None:
    """A ModelCheckpoint state names only ``.ckpt`` files in its own folder: a resumed one deletes what it names."""
    callbacks = checkpoint.get("callbacks") or {}
    if not isinstance(callbacks, dict):
        raise CheckpointError(f"{where}: its callback states are not a mapping")
    for key, state in callbacks.items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, dict):
            continue
        dirpath = state.get("dirpath")
        paths = [state.get(k) for k in ("best_model_path", "kth_best_model_path", "last_model_path")]
        best = state.get("best_k_models") or {}
        paths += list(best) if isinstance(best, dict) else [best]
        for path in (p for p in paths if p):
            inside = (
                isinstance(path, str)
                and isinstance(dirpath, str)
                and "://" not in path
                and path.endswith(".ckpt")
                and ".." not in PurePath(path).parts
                and PurePath(path).parent == PurePath(dirpath)
            )
            if not inside:
                raise CheckpointError(
                    f"{where}: its checkpoint callback state names {str(path)[:120]!r}, which is not a .ckpt file in its own folder "
                    f"{str(dirpath)[:120]!r}: {EDITED}"
                )


def check_checkpoint(
    checkpoint: dict,
    module_class: type,
    trusted: Iterable[str | type] | str | None = None,
    where: str = "the checkpoint",
    overrides: dict | None = None,
) -> nn.Module | None:
    """Everything a load into ``module_class`` would act on, checked before it acts: names, shapes, other values.
    ``overrides``: the caller's settings in place of the checkpoint's. Returns the network (on the meta device
    when built from the checkpoint's settings), or None."""
    trusted = trusted_names(trusted)
    overrides = overrides or {}
    hparams = checkpoint.get("hyper_parameters")
    named = {k: v for k, v in hparams.items() if k not in overrides} if isinstance(hparams, dict) else hparams
    check_names(named, trusted, where, init_settings(module_class))
    check_callback_files(checkpoint, where)
    check_loop_state(checkpoint, where)
    settings = {**(hparams or {}), **overrides}
    spec = settings.get("network")
    if spec is None:
        return None
    built = spec if isinstance(spec, nn.Module) else build_network(spec, trusted, where)
    check_shapes(built, checkpoint.get("state_dict"), where)
    check_finite(checkpoint.get("state_dict"), where)
    preprocessing = checkpoint.get("preprocessing")
    size = tuple(check_preprocessing(preprocessing, where)["input_size"]) if preprocessing is not None else (32, 32)
    if isinstance(spec, nn.Module):  # the caller's own network, in real memory: not run here
        return built
    classes = output_classes(built, size, where)
    names = settings.get("class_names") or (preprocessing or {}).get("class_names")
    for setting, value in (
        ("num_classes", settings.get("num_classes", classes)),
        ("class_names", len(names) if names else classes),
    ):
        if value != classes:
            raise CheckpointError(
                f"{where}: its {setting} ({str(value)[:40]}) does not match its network's {classes} outputs: {EDITED}"
            )
    return built


def check_same_network(saved: str | None, wanted: str | None) -> None:
    """Refuse a checkpoint of another network than the one the config or caller builds, naming both (full names)."""
    if saved and wanted and not same_class(saved, wanted):
        raise CheckpointError(
            f"the checkpoint holds a {saved} but the config builds a {wanted}: use the config.yaml saved "
            "with the checkpoint (--config), or a checkpoint of this network"
        )


TEACHER_HINT = "give the teacher's class and init_args from its run's config.yaml"


def check_teacher(distillation: Any, trusted: Iterable[str | type] | str | None, where: str) -> None:
    """A distillation the checkpoint names: its teacher fits its own checkpoint's weights before it is built for real."""
    if not isinstance(distillation, dict):
        return
    args = distillation.get("init_args") or {}
    teacher, path = args.get("teacher"), args.get("checkpoint")
    if teacher is None or not isinstance(path, str):
        return
    place = "distillation teacher"
    built = build_network(teacher, trusted_names(trusted), where, place)
    weights = read_checkpoint(path).get("state_dict")
    check_shapes(built, weights, f"{where} (teacher checkpoint {path})", place, TEACHER_HINT)
    check_finite(weights, f"{where} (teacher checkpoint {path})")
