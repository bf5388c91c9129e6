"""Run folders: ``<save_dir>/<name>/version_N``, claimed atomically, and which one a checkpoint resumes into."""

from __future__ import annotations

import os
from pathlib import Path

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
