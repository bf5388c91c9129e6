"""Run folders: ``<save_dir>/<name>/version_N``, claimed atomically, and the checkpoints in them."""

from __future__ import annotations

import os
from pathlib import Path

from cifar_lightning.errors import UserError

VERSION_ENV = "CIFAR_LIGHTNING_RUN_VERSION"  # the run folder, handed to DDP processes started later
LAST_NAME = "last"  # checkpoints/last.ckpt, written after every epoch
RUN_CONFIG = "config.yaml"  # the settings a fit was started with, written once


def logger_dir(config) -> Path | None:
    """``save_dir/name`` of the configured TensorBoardLogger, or None for another logger."""
    logger = config["trainer"].get("logger")
    if not logger or isinstance(logger, (bool, list)) or "TensorBoardLogger" not in str(logger.get("class_path")):
        return None
    args = logger["init_args"]
    return Path(args.get("save_dir") or ".") / (args.get("name") or "lightning_logs")


def run_version(config, ckpt_path: str) -> str | None:
    """``version_N`` when the checkpoint lives in ``<logger dir>/version_N/checkpoints/``."""
    folder = logger_dir(config)
    path = Path(ckpt_path).resolve()
    if folder is None or config["last_checkpoint"].get("dirpath") or path.parent.name != "checkpoints":
        return None
    return path.parent.parent.name if path.parent.parent.parent == folder.resolve() else None


def run_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """The run folder of a checkpoint in ``<run>/checkpoints/``, when that folder holds a config.yaml."""
    path = Path(ckpt_path).resolve()
    run = path.parent.parent
    return run if path.parent.name == "checkpoints" and (run / RUN_CONFIG).is_file() else None


def is_first_process() -> bool:
    """Not a process that a distributed launcher (Lightning's, torchrun, SLURM) started as rank > 0."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def claim_version(folder: Path) -> str:
    """Create and return the next free ``version_N`` folder under ``folder``.

    Lightning picks max(version_N) + 1 without claiming it, so two runs started at once would
    share a folder; ``mkdir`` claims one atomically.
    """
    folder.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name.split("_")[1]) for p in folder.glob("version_*") if p.name.split("_")[1].isdigit()]
    number = max(taken, default=-1) + 1
    while True:
        try:
            (folder / f"version_{number}").mkdir()
            return f"version_{number}"
        except FileExistsError:  # another run claimed it first
            number += 1


def find_last_checkpoint(config) -> Path:
    """Resolve ``--ckpt_path last`` across runs: Lightning alone looks only in the new run's folder."""
    dirpath = config["last_checkpoint"].get("dirpath")
    folder = logger_dir(config)
    name = f"{LAST_NAME}.ckpt"
    if dirpath:
        found = [Path(dirpath) / name]
    elif folder is not None:
        found = list(folder.glob(f"*/checkpoints/{name}"))
    else:
        found = list(Path(config["trainer"].get("default_root_dir") or ".").glob(f"**/checkpoints/{name}"))
    found = [p for p in found if p.is_file()]
    if not found:
        where = dirpath or folder or "the default root dir"
        raise UserError(f"--ckpt_path last: no last.ckpt under {where}; pass a checkpoint file, or fit without it")
    return max(found, key=lambda p: p.stat().st_mtime)
