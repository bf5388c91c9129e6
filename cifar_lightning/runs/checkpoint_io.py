"""Checkpoint files that are never half-written."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from cifar_lightning.errors import CheckpointError
from cifar_lightning.runs.checkpoints import read_checkpoint
from cifar_lightning.runs.loggers import class_path_of

# less free space than this, seen while the partial file still holds what it wrote, means the disk
# filled up (one checkpoint of these networks is 0.6-2.4 MB)
FULL_DISK_BYTES = 1 << 20


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:  # the folder itself went away
        return FULL_DISK_BYTES


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write beside the target, flush, then rename over it: Lightning's save moves a file from the temporary folder,
    a copy across file systems, which a kill leaves truncated."""

    def __init__(self) -> None:
        super().__init__()
        # (path, checkpoint) the CLI read and checked while parsing: the restore uses it, so a command reads its
        # checkpoint once (and restores exactly what was checked)
        self.preloaded: tuple[str, dict[str, Any]] | None = None

    def load_checkpoint(
        self, path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """A local file through ``read_checkpoint``: checked; the one the CLI read already is not read again."""
        if weights_only is False or "://" in str(path):  # pickled objects the user trusts, or remote storage
            return super().load_checkpoint(path, map_location, weights_only)
        if self.preloaded is not None and self.preloaded[0] == str(Path(path).resolve()):
            checkpoint, self.preloaded = self.preloaded[1], None
            return checkpoint
        return read_checkpoint(path)  # on the CPU; the strategy moves the weights to the device

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's fsspec path
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")  # hidden; a kill leaves it for the next save to replace
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # a folder removed mid-run comes back
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())  # the bytes are on disk before the name points at them
            os.replace(partial, path)
        except (OSError, RuntimeError) as err:  # a full disk reaches torch's zip writer as a RuntimeError
            cause = err.strerror if isinstance(err, OSError) and err.strerror else " ".join(str(err).split())[:160]
            free = _free_bytes(path.parent)
            if isinstance(err, RuntimeError) and free < FULL_DISK_BYTES:
                # torch says only "[enforce fail at inline_container.cc] unexpected pos ..."
                cause = f"no space left on device: {free // 1024} kB free"
            partial.unlink(missing_ok=True)
            raise CheckpointError(
                f"cannot write checkpoint {path} ({cause}); the previous {path.name} is untouched: free disk space "
                "or make the folder writable, then resume with --ckpt_path last"
            ) from None


def is_checkpoint_io(plugin) -> bool:
    """A trainer plugin as the config holds it (a class_path, or a name like "bf16-mixed") that saves checkpoints."""
    class_path = plugin.get("class_path") if hasattr(plugin, "get") else None
    if not class_path:
        return False
    module, _, name = class_path.rpartition(".")
    return issubclass(getattr(importlib.import_module(module), name, object), CheckpointIO)


def with_atomic_io(plugins) -> list:
    """A config's trainer plugins, with ``AtomicCheckpointIO`` unless one of them saves checkpoints already."""
    from jsonargparse import Namespace

    plugins = plugins if isinstance(plugins, list) else [plugins] if plugins else []
    if any(is_checkpoint_io(p) for p in plugins):
        return plugins
    return [*plugins, Namespace(class_path=class_path_of(AtomicCheckpointIO), init_args=Namespace())]
