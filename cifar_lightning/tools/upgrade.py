"""Rewrite a run folder written by an older version to this version's names, once; weights unchanged.

    cifar-lightning upgrade lightning_logs/version_3 [more folders or files...]

A run folder's ``config*.yaml`` files, its ``summary.json`` and its checkpoints name classes and
options. When one is renamed, this rewrites them, so the run still tests and resumes:
- class paths of moved classes (``renames.RENAMED_CLASSES``), wherever a config or checkpoint names them;
- ``model.flip_tta`` and ``model.tta_shift`` become the one ``model.tta``;
- ``data.augmentation.shift`` (a fraction of the side, truncated toward zero by albumentations)
  becomes ``shift_px``, the largest whole-pixel shift it reached: 0.0625 reached 1 px, 0.1 3 px;
- LightningCLI's ``optimizer``/``lr_scheduler`` keys, always null here, go (the module owns both);
- ``speed_monitor.window_size`` goes: the rate is averaged between logging steps;
- settings added since the run was written get the value the run used (``renames.ADDED_SETTINGS``:
  ``data.pipeline: albumentations``);
- a checkpoint's data state gets the training statistics its ``preprocessing`` records;
- a summary's test-time views and epoch numbers in today's fields (views counted, epochs from 0).

Each rewritten file is replaced atomically; the original is kept beside it as ``NAME.pre-upgrade``.
A file that needs nothing is left untouched, so running it twice changes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from cifar_lightning.errors import ConfigError, user_errors
from cifar_lightning.renames import ADDED_SETTINGS, RENAMED_CLASSES
from cifar_lightning.runs.checkpoints import read_checkpoint
from cifar_lightning.training.module import TTA_VIEWS

IMAGE_SIDE = 32  # pixels: what the old fractional shift was a fraction of
BACKUP_SUFFIX = ".pre-upgrade"


def renamed(tree: Any) -> Any:
    """``tree`` with every string that names a moved class replaced by its new name."""
    if isinstance(tree, str):
        return RENAMED_CLASSES.get(tree, tree)
    if isinstance(tree, list):
        return [renamed(item) for item in tree]
    if isinstance(tree, dict):
        return {key: renamed(value) for key, value in tree.items()}
    return tree


def tta_level(flip: Any, shift: Any) -> str:
    return "flip_shift" if shift else "flip" if flip else "none"


def upgrade_model_settings(model: dict) -> dict:
    """``flip_tta``/``tta_shift`` as the one ``tta`` setting (a config's ``model`` section)."""
    if "flip_tta" not in model and "tta_shift" not in model:
        return model
    model = dict(model)
    flip, shift = model.pop("flip_tta", False), model.pop("tta_shift", 0)
    model.setdefault("tta", tta_level(flip, shift))
    return model


def whole_pixel_shift(fraction: float) -> int:
    """The largest whole-pixel shift a fractional one reached: albumentations truncated each draw toward zero."""
    return max(0, math.ceil(fraction * IMAGE_SIDE) - 1)


def upgrade_config(config: dict) -> dict:
    config = renamed(config)
    for key in ("optimizer", "lr_scheduler"):  # LightningCLI's own, always null here: the module owns both
        if key in config and config[key] is None:
            del config[key]
    if isinstance(config.get("speed_monitor"), dict) and "window_size" in config["speed_monitor"]:
        # the rate is now averaged between logging steps (trainer.log_every_n_steps)
        config["speed_monitor"] = {k: v for k, v in config["speed_monitor"].items() if k != "window_size"}
    if isinstance(config.get("model"), dict):
        config["model"] = upgrade_model_settings(config["model"])
    augmentation = (config.get("data") or {}).get("augmentation") if isinstance(config.get("data"), dict) else None
    if isinstance(augmentation, dict) and "shift" in augmentation:
        augmentation = dict(augmentation)
        augmentation.setdefault("shift_px", whole_pixel_shift(float(augmentation.pop("shift"))))
        config["data"] = {**config["data"], "augmentation": augmentation}
    for key, value in ADDED_SETTINGS.items():  # settings added since: what the run used, said outright
        section, _, name = key.partition(".")
        if isinstance(config.get(section), dict) and name not in config[section]:
            config[section] = {**config[section], name: value}
    return config


def upgrade_summary(summary: dict) -> dict:
    summary = renamed(summary)
    if "test_views" not in summary and ("test_flip_tta" in summary or "test_tta_shift" in summary):
        summary["test_views"] = TTA_VIEWS[tta_level(summary.get("test_flip_tta"), summary.get("test_tta_shift"))]
    for key in ("test_flip_tta", "test_tta_shift"):
        summary.pop(key, None)
    if summary.get("epoch_numbering") != "from 0":  # summaries without the field counted epochs from 1
        for key in ("first_epoch_val_acc_ge_85", "best_val_epoch"):
            if summary.get(key) is not None:
                summary[key] -= 1
        summary["epoch_numbering"] = "from 0"
    return summary


DATA_STATE = "CIFAR10DataModule"  # where Lightning keeps the data module's state_dict in a checkpoint


def upgrade_checkpoint(checkpoint: dict) -> dict:
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict):
        hparams = renamed(hparams)
        for key in ("flip_tta", "tta_shift"):  # evaluation settings, not saved with the weights any more
            hparams.pop(key, None)
        checkpoint["hyper_parameters"] = hparams
    data, preprocessing = checkpoint.get(DATA_STATE), checkpoint.get("preprocessing")
    if isinstance(data, dict) and isinstance(preprocessing, dict) and not data.get("mean"):
        # the same training-split statistics, which the data module's state now carries too
        checkpoint[DATA_STATE] = {**data, "mean": list(preprocessing["mean"]), "std": list(preprocessing["std"])}
    return checkpoint


def _upgraded_parts(checkpoint: dict) -> str:
    return json.dumps([checkpoint.get("hyper_parameters"), checkpoint.get(DATA_STATE)], sort_keys=True, default=str)


def _replace(path: Path, write) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    backup, n = path.with_name(path.name + BACKUP_SUFFIX), 1
    while backup.exists():  # an earlier upgrade's original stays as it is
        backup, n = path.with_name(f"{path.name}{BACKUP_SUFFIX}.{n}"), n + 1
    shutil.copy2(path, backup)
    os.replace(partial, path)


def upgrade_file(path: Path, write: bool = True) -> bool:
    """Rewrite one config, summary or checkpoint if it needs it; True when it did (or, with
    ``write=False``, would)."""
    if path.suffix in (".yaml", ".yml"):
        try:
            before = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not YAML ({' '.join(str(err).split()[:12])}): nothing was changed") from None
        if not isinstance(before, dict):
            return False
        after = upgrade_config(json.loads(json.dumps(before)))
        if after == before:
            return False
        if write:
            _replace(path, lambda out: out.write_text(yaml.safe_dump(after, sort_keys=False)))
    elif path.suffix == ".json":
        try:
            before = json.loads(path.read_text())
        except ValueError as err:
            raise ConfigError(f"{path} is not JSON ({err}): nothing was changed") from None
        if not isinstance(before, dict):
            return False
        after = upgrade_summary(json.loads(json.dumps(before)))
        if after == before:
            return False
        if write:
            _replace(path, lambda out: out.write_text(json.dumps(after, indent=2) + "\n"))
    elif path.suffix == ".ckpt":
        checkpoint = read_checkpoint(path)
        before = _upgraded_parts(checkpoint)
        checkpoint = upgrade_checkpoint(checkpoint)
        if _upgraded_parts(checkpoint) == before:
            return False
        if write:
            _replace(path, lambda out: torch.save(checkpoint, out))
    else:
        return False
    return True


def files_of(target: Path) -> list[Path]:
    """A file as given; in a folder, its configs, summary and checkpoints (those under checkpoints/ too)."""
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise ConfigError(f"{target} does not exist: pass a run folder (lightning_logs/version_N) or a config, summary or checkpoint")
    found = [*target.glob("config*.yaml"), *target.glob("summary.json"), *target.glob("*.ckpt"), *target.glob("checkpoints/*.ckpt")]
    return sorted(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning upgrade", description=__doc__.splitlines()[0])
    parser.add_argument("targets", type=Path, nargs="+", help="run folders, or config/summary/checkpoint files")
    args = parser.parse_args(argv)
    with user_errors(False, "cifar-lightning upgrade"):
        for target in args.targets:
            for path in files_of(target):
                print(f"{'upgraded' if upgrade_file(path) else 'already current'}: {path}")


if __name__ == "__main__":
    main()
