"""The global random states in checkpoints, so that a resumed run matches one that never stopped."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from cifar_lightning.errors import EDITED, CheckpointError


class RandomState(Callback):
    """Carries torch's, numpy's and Python's RNG states in checkpoints (Lightning saves none), as tensors and plain
    numbers, restored when the first resumed epoch starts: a network that draws (dropout) resumes exactly."""

    def __init__(self) -> None:
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        version, python_state, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            },
            "python": {"version": version, "state": list(python_state), "gauss": gauss},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        # a checkpoint is data: each state is tried on a generator of its own before it replaces a global one
        try:
            restore(
                state_dict, torch.Generator().set_state, np.random.RandomState().set_state, random.Random().setstate
            )
            if not isinstance(state_dict["cuda"], (list, tuple)) or not all(
                isinstance(t, torch.Tensor) for t in state_dict["cuda"]
            ):
                raise TypeError("cuda states are not a list of tensors")
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            first = " ".join(str(err).split())[:120]
            raise CheckpointError(
                f"the checkpoint's random states are not ones this project saved ({type(err).__name__}: {first}): {EDITED}"
            ) from None
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        restore(state, torch.set_rng_state, np.random.set_state, random.setstate)
        if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def restore(state: dict, set_torch, set_numpy, set_python) -> None:
    """The saved states through the given setters: fresh generators' to try them, the global ones to restore them."""
    n, p = state["numpy"], state["python"]
    set_torch(state["torch"])
    set_numpy((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached_gaussian"]))
    set_python((p["version"], tuple(p["state"]), p["gauss"]))
