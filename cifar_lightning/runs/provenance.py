"""Where a result came from: the commit, the machine and the data copy, as plain data."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from cifar_lightning.data.sources import published_sha256


def git(*args: str) -> str | None:
    """``git args...`` in the project's checkout, or None outside one (an installed package)."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit() -> dict:
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "commit_dirty": bool(dirty) if dirty is not None else None}


def commit_label() -> str:
    """The short commit, and whether tracked files differ from it: the provenance line of a benchmark file."""
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{git('rev-parse', '--short', 'HEAD')}{' + uncommitted changes' if dirty else ''}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_model() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu_model(),
        "platform": platform.platform(),
    }


def data_copy(datamodule) -> dict:
    """The data a run read: its folder, its archive and the archive's published checksum."""
    archive = getattr(datamodule, "archive", None)
    info = {"data_dir": str(getattr(datamodule, "data_dir", "")), "archive": str(archive) if archive else None}
    if archive is not None:
        published = published_sha256(Path(archive))
        if published is not None:
            info["archive_sha256"] = published
    source = getattr(datamodule, "source", None)
    if source:
        info["source"] = source
    return info
