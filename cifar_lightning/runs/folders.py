"""Run folders: ``<save_dir>/<name>/version_N``, claimed atomically, and which one a checkpoint resumes into."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info

from cifar_lightning.errors import UserError, ensure_writable_folder
from cifar_lightning.runs import loggers

VERSION_ENV = "CIFAR_LIGHTNING_RUN_VERSION"  # the run folder, handed to DDP processes started later
LAST_NAME = "last"  # checkpoints/last.ckpt, written after every epoch
RUN_CONFIG = "config.yaml"  # the settings a fit was started with, written once
LOG_FIX = "point the logger's save_dir elsewhere (--trainer.logger.init_args.save_dir)"
# run folders this process created: the only ones it may remove (release_unused), unless a
# training step has written to them
CLAIMED: set[Path] = set()
TRAINED: set[Path] = set()


def logger_dir(config) -> Path | None:
    """``save_dir/name`` of the logger that keeps the run folder (the first, once ``loggers.arrange`` ran), or None without one."""
    logger = next(iter(loggers.entries(config)), None)
    if logger is None or not issubclass(loggers.logger_class(logger) or object, loggers.FOLDER_LOGGERS):
        return None
    args = logger["init_args"]
    return Path(args.get("save_dir") or ".") / (args.get("name") or loggers.RECORD_NAME)


def folder_logger_args(config):
    """The init_args of the logger that keeps the run folder."""
    logger = config["trainer"]["logger"]
    return (logger[0] if isinstance(logger, list) else logger)["init_args"]


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
    """The next free ``version_N`` under ``folder``, claimed by ``mkdir``: Lightning's own choice claims nothing, so
    two runs started at once (a search's workers) would share one."""
    ensure_writable_folder(folder, "log", LOG_FIX)
    taken = [int(p.name.split("_")[1]) for p in folder.glob("version_*") if p.name.split("_")[1].isdigit()]
    number = max(taken, default=-1) + 1
    while True:
        try:
            (folder / f"version_{number}").mkdir()
            CLAIMED.add((folder / f"version_{number}").resolve())
            return f"version_{number}"
        except FileExistsError:  # another run claimed it first
            number += 1


def claim_run_folder(config, ckpt_path: str | None, fit: bool = False) -> None:
    """Where this command logs, checked writable before anything runs: a resumed fit or an evaluation in its run's
    folder, a new fit in a new ``version_N`` (DDP processes join it through ``VERSION_ENV``)."""
    if fit and config["trainer"].get("logger") is False:
        # the run folder is the logger's: without one, Lightning would put every fit's checkpoints in one folder
        raise UserError(
            "a fit needs a logger, whose run folder holds its config, checkpoints and curves: leave out "
            "--trainer.logger false, or pass --trainer.logger lightning.pytorch.loggers.CSVLogger for plain files"
        )
    if fit and not ckpt_path:
        refuse_checkpoints_of_another_run(config)
    folder = logger_dir(config)
    if folder is None:  # another logger, or none: Lightning's default root holds the checkpoints
        ensure_writable_folder(
            Path(config["trainer"].get("default_root_dir") or "."), "log", "pass another --trainer.default_root_dir"
        )
        return
    logger_args = folder_logger_args(config)
    version = run_version(config, ckpt_path) if ckpt_path else None
    named = logger_args.get("version")
    if version is None and fit and named is not None and (folder / str(named) / RUN_CONFIG).is_file():
        # a new fit started from a run's config.yaml, which names that run's folder: a folder of its own
        logger_args["version"] = None
        rank_zero_info(
            f"{folder / str(named)} holds another run: this fit logs into a new folder "
            f"(to resume that run instead: --ckpt_path {folder / str(named) / 'checkpoints' / (LAST_NAME + '.ckpt')})"
        )
    if version is not None:
        logger_args["version"] = version
    elif logger_args.get("version") is None:
        if is_first_process():
            os.environ[VERSION_ENV] = claim_version(folder)
        logger_args["version"] = os.environ.get(VERSION_ENV)
    if logger_args.get("version") is not None:
        ensure_writable_folder(folder / str(logger_args["version"]), "log", LOG_FIX)


def checkpoint_folders(config) -> list[tuple[Path, str]]:
    """The checkpoint folders a config names (``dirpath``), shared by every fit, each with its setting."""
    return [
        (Path(config[key]["dirpath"]), f"--{key}.dirpath")
        for key in ("checkpoint", "last_checkpoint")
        if (config.get(key) or {}).get("dirpath")
    ]


def refuse_checkpoints_of_another_run(config) -> None:
    """A new fit never writes over another run's checkpoints (``last.ckpt`` is rewritten every epoch)."""
    for folder, setting in checkpoint_folders(config):
        held = sorted(p.name for p in folder.glob("*.ckpt"))
        if held:
            resume = LAST_NAME + ".ckpt" if LAST_NAME + ".ckpt" in held else held[-1]
            raise UserError(
                f"{folder} holds another run's checkpoints ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}), "
                f"which a new fit would write over: resume that run with --ckpt_path {folder / resume}, "
                f"or pass another {setting}"
            )


def mark_trained(run_dir: str | Path | None) -> None:
    """A training step finished in ``run_dir``: it holds a result from now on, and is never released."""
    if run_dir is not None:
        TRAINED.add(Path(run_dir).resolve())


def release_unused(run_dir: str | Path) -> bool:
    """Remove a run folder this process claimed, for a command that failed before a training step or checkpoint."""
    run_dir = Path(run_dir)
    if (
        run_dir.resolve() not in CLAIMED
        or run_dir.resolve() in TRAINED
        or any((run_dir / "checkpoints").glob("*.ckpt"))
    ):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    CLAIMED.discard(run_dir.resolve())
    return True
