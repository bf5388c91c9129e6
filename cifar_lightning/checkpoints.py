"""Reading a checkpoint safely, and deciding whether a fit may resume from one."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml

from cifar_lightning.errors import CheckpointError, UserError

# Settings that change what a run trains. Resuming with any of them different from the run's own
# config.yaml would continue one run under another's record, so it is refused. Everything else
# (logger, progress bar, devices, loader workers, data location, evaluation batch size,
# test-time views) may differ. A key counts when it equals one of these or starts with one + ".".
TRAINING_KEYS = (
    "seed_everything",
    "model",
    "data.val_size",
    "data.split_seed",
    "data.batch_size",
    "data.augmentation",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.precision",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "trainer.limit_train_batches",
    "trainer.callbacks",
)
# evaluation settings inside ``model``: they change no training
NOT_TRAINING_KEYS = ("model.tta",)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True``, or ``CheckpointError`` saying why not.

    A truncated copy, an empty file or any other file is refused with one line naming it.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path, or use --ckpt_path last")
    hint = "copy it again, or pick another checkpoint (each run keeps its best and last ones in checkpoints/)"
    if not path.is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (a folder or device, not a file): {hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is not a complete checkpoint (the file is empty): {hint}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; a cut copy has no end record
        raise CheckpointError(f"{path} is not a complete checkpoint (truncated, or not a torch checkpoint file): {hint}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise  # a pickled object in it: the entry points say so in their own line
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        first = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{path} is not a complete checkpoint ({first}): {hint}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a complete checkpoint (it holds no state_dict: not a Lightning checkpoint): {hint}")
    return checkpoint


def check_network(checkpoint: dict, wanted: Any) -> None:
    """Refuse a checkpoint of another network than the config asks for, naming both.

    Lightning would otherwise build the checkpoint's own network over the command line's choice.
    """
    saved = (checkpoint.get("hyper_parameters") or {}).get("network")
    saved_path = saved.get("class_path") if isinstance(saved, dict) else checkpoint.get("network_class")
    wanted_path = getattr(wanted, "class_path", None) or (wanted.get("class_path") if isinstance(wanted, dict) else None)
    if saved_path and wanted_path and saved_path.rsplit(".", 1)[-1] != wanted_path.rsplit(".", 1)[-1]:
        raise CheckpointError(
            f"the checkpoint holds a {saved_path} but the config builds a {wanted_path}: use the config.yaml saved "
            "with the checkpoint (--config), or a checkpoint of this network"
        )


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists of class_path dicts are kept whole."""
    if not isinstance(config, dict):
        return {prefix.rstrip("."): config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def counts_for_training(key: str) -> bool:
    def under(key: str, prefixes: tuple[str, ...]) -> bool:
        return any(key == p or key.startswith(p + ".") for p in prefixes)

    return under(key, TRAINING_KEYS) and not under(key, NOT_TRAINING_KEYS)


# Callbacks of these packages can change what is trained or evaluated (the weight average); a
# user's own callbacks (logging, stopping, a test's fault injection) are the user's business.
TRAINING_CALLBACK_PACKAGES = ("lightning.", "pytorch_lightning.", "cifar_lightning.")


def _training_callbacks(callbacks: Any) -> Any:
    if not isinstance(callbacks, list):
        return callbacks
    kept = [c for c in callbacks if not isinstance(c, dict) or str(c.get("class_path", "")).startswith(TRAINING_CALLBACK_PACKAGES)]
    return kept or None


def training_differences(run_config: dict, new_config: dict) -> list[str]:
    """The training keys whose values differ between a run's config.yaml and a new fit's settings."""
    old, new = flatten(run_config), flatten(new_config)
    for flat in (old, new):
        if "trainer.callbacks" in flat:
            flat["trainer.callbacks"] = _training_callbacks(flat["trainer.callbacks"])
    keys = sorted(k for k in set(old) | set(new) if counts_for_training(k))
    return [k for k in keys if old.get(k) != new.get(k)]


def check_resume(run_dir: Path, new_config: dict, checkpoint: dict, command: str) -> None:
    """Refuse to continue ``run_dir`` under other training settings; say so when it already finished."""
    run_config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    differ = training_differences(run_config, new_config)
    if differ:
        shown = ", ".join(differ[:8]) + (f" and {len(differ) - 8} more" if len(differ) > 8 else "")
        raise UserError(
            f"cannot resume {run_dir}: these training settings differ from its config.yaml: {shown}. "
            f"Start a new run without --ckpt_path, or resume it as it was: {command} fit --config {run_dir / 'config.yaml'} --ckpt_path last"
        )
    done = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {}).get("processed")  # epochs whose training ended
    max_epochs = new_config.get("trainer", {}).get("max_epochs")
    if done is not None and max_epochs is not None and max_epochs >= 0 and done >= max_epochs:
        raise RunFinished(
            f"{run_dir} already finished its {max_epochs} epochs: nothing to resume. Test it with "
            f"{command} test --config {run_dir / 'config.yaml'} --ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}"
        )


class RunFinished(Exception):
    """The run to resume has nothing left to train: not an error."""
