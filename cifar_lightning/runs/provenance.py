"""Where a result came from: the commit, the machine and the data copy, as plain data."""

from __future__ import annotations

import dataclasses
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


def data_found(datamodule, tta: str) -> dict:
    """What a fit found in its data (source, classes, images, size, augmentation, views), printed and in ``run.json``."""
    augmentation = getattr(datamodule, "augmentation", None)
    return {
        "source": getattr(datamodule, "source", ""),
        "cache": str(getattr(datamodule, "cache", "") or ""),
        "classes": list(getattr(datamodule, "classes", ())),
        "images": {split: len(getattr(datamodule, f"{split}_set", ())) for split in ("train", "val", "test")},
        "image_size": getattr(datamodule, "image_size", None),
        "augmentation": dataclasses.asdict(augmentation) if dataclasses.is_dataclass(augmentation) else None,
        "test_time_views": tta,
    }


def found_lines(found: dict) -> list[str]:
    """``data_found`` as the few lines a fit prints; the class names shortened past 20."""
    names, images, size = found["classes"], found["images"], found["image_size"]
    shown = ", ".join(names[:20]) + (f", ... and {len(names) - 20} more" if len(names) > 20 else "")
    lines = [
        f"data: {found['source'] or 'unknown'} (decoded into {found['cache'] or 'no cache'})",
        f"classes: {len(names)} ({shown})",
        f"images: {images['train']:,} train, {images['val']:,} validation, {images['test']:,} test, read at {size} x {size} px",
    ]
    a = found["augmentation"]
    if a is not None:
        flips = f"horizontal flips p={a['hflip_p']}" if a["hflip_p"] else "no flips"
        mirrored = a["hflip_p"] or found["test_time_views"] != "none"
        lines.append(
            f"augmentation: {flips}; shift {a['shift_px']} px, scale {a['scale']}, rotate {a['rotate']} deg "
            f"(p={a['affine_p']}); cutout {a['cutout_size']} px (p={a['cutout_p']}); test-time views: "
            f"{found['test_time_views']}"
            + (" (for digits or text, --config configs/data/no-flips.yaml turns mirroring off)" if mirrored else "")
        )
    return lines
