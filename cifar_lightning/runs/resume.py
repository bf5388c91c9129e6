"""Whether a fit may resume from a run's checkpoint: the same training settings, and epochs left to train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifar_lightning.errors import UserError
from cifar_lightning.files import read_yaml


def flatten(tree: Any, prefix: str = "", keep_classes: bool = False) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``. Lists stay whole; so does a ``class_path`` mapping with ``keep_classes``."""
    if not isinstance(tree, dict) or (keep_classes and "class_path" in tree):
        return {prefix.removesuffix("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}.", keep_classes))
    return flat


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
    "data.pipeline",  # the same augmentation, drawn from other random streams
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.precision",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "trainer.limit_train_batches",
    "trainer.callbacks",
)
# settings inside ``model`` that change no training
NOT_TRAINING_KEYS = ("model.tta", "model.compile")  # model.compile: how the network runs, not what it learns


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
    kept = [
        c
        for c in callbacks
        if not isinstance(c, dict) or str(c.get("class_path", "")).startswith(TRAINING_CALLBACK_PACKAGES)
    ]
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
    run_config = read_yaml(run_dir / "config.yaml", "the run's config") or {}
    differ = training_differences(run_config, new_config)
    if differ:
        shown = ", ".join(differ[:8]) + (f" and {len(differ) - 8} more" if len(differ) > 8 else "")
        raise UserError(
            f"cannot resume {run_dir}: these training settings differ from its config.yaml: {shown}. "
            f"Start a new run without --ckpt_path, or resume it as it was: {command} fit --config {run_dir / 'config.yaml'} --ckpt_path last"
        )
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    done = loop.get("epoch_progress", {}).get("current", {}).get("processed")  # epochs whose training ended
    max_epochs = new_config.get("trainer", {}).get("max_epochs")
    if done is not None and max_epochs is not None and max_epochs >= 0 and done >= max_epochs:
        raise RunFinished(
            f"{run_dir} already finished its {max_epochs} epochs: nothing to resume. Test it with "
            f"{command} test --config {run_dir / 'config.yaml'} --ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}"
        )


class RunFinished(Exception):
    """The run to resume has nothing left to train: not an error."""
