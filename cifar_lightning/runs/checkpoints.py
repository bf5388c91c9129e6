"""Checkpoints: finding one (``--ckpt_path last``, the run it belongs to) and reading it safely."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cifar_lightning.errors import CheckpointError, UserError
from cifar_lightning.runs.folders import LAST_NAME, RUN_CONFIG, logger_dir

# what a checkpoint may unpack to: these networks' checkpoints are 0.6-2.4 MB, and a network of
# 10 million parameters with its optimizer and averaged copies about 160 MB
MAX_CHECKPOINT_BYTES = 512 << 20
MAX_DEPTH = 32  # levels of nested settings and states; Lightning's own checkpoints have about 8


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` (``weights_only=True``), or one line saying why not, before any of it is loaded."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path, or use --ckpt_path last")
    hint = "copy it again, or pick another checkpoint (each run keeps its best and last ones in checkpoints/)"
    if not path.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (a folder or device, not a file): {hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is not a complete checkpoint (the file is empty): {hint}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; a cut copy has no end record
        raise CheckpointError(
            f"{path} is not a complete checkpoint (truncated, or not a torch checkpoint file): {hint}"
        )
    check_unpacked_size(path, hint)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise  # a pickled object in it: the entry points say so in their own line
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        first = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{path} is not a complete checkpoint ({first}): {hint}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a complete checkpoint (it holds no state_dict: not a Lightning checkpoint): {hint}"
        )
    if nesting_depth(checkpoint) > MAX_DEPTH:  # every reader after this one walks it recursively
        raise CheckpointError(
            f"{path} nests its settings more than {MAX_DEPTH} levels deep, which this project never writes: {hint}"
        )
    return checkpoint


def nesting_depth(value: Any) -> int:
    """How deep dicts, lists and tuples nest in ``value``, walked without recursion (so without a limit of its own)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, (list, tuple)):
            deepest = max(deepest, depth)
            stack += [(v, depth + 1) for v in item]
    return deepest


def check_unpacked_size(path: Path, hint: str) -> None:
    """torch.save stores its zip members uncompressed, so what a checkpoint unpacks to is its size on
    disk; a re-compressed member could hold gigabytes in a few MB. Read from the zip's directory only."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a complete checkpoint ({str(err)[:120]}): {hint}") from None
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise CheckpointError(f"{path} was re-compressed ({packed[0][:80]}), which torch.save never does: {hint}")
    total = sum(m.file_size for m in members)
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path} unpacks to {total >> 20} MB, more than the {MAX_CHECKPOINT_BYTES >> 20} MB a checkpoint "
            f"of a compact network needs: {hint}"
        )


def run_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """The run folder of a checkpoint in ``<run>/checkpoints/``, when that folder holds a config.yaml."""
    path = Path(ckpt_path).resolve()
    run = path.parent.parent
    return run if path.parent.name == "checkpoints" and (run / RUN_CONFIG).is_file() else None


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
