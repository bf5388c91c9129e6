"""What an image goes through before the network, as a checkpoint records it: checked, since a checkpoint is data."""

from __future__ import annotations

import math
from typing import Any

from cifar_lightning.errors import CheckpointError

# a larger input than this is not an image these networks were trained on (32 x 32), and resizing to
# it would allocate what the checkpoint's contents do not need
MAX_INPUT_SIDE = 1024


def check_preprocessing(preprocessing: Any, where: str) -> dict:
    """The checkpoint's preprocessing: 3 finite means, 3 positive stds, class names, a bounded input size."""
    if not isinstance(preprocessing, dict):
        raise CheckpointError(
            f"{where} carries no preprocessing (mean, std, class names): re-save it with this project"
        )

    def numbers(key: str, positive: bool) -> list[float]:
        value = preprocessing.get(key)
        if (
            not isinstance(value, (list, tuple))
            or len(value) != 3
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
                for v in value
            )
        ):
            raise CheckpointError(
                f"{where}: its preprocessing {key} must be 3 finite{' positive' if positive else ''} numbers, got {str(value)[:80]}"
            )
        return [float(v) for v in value]

    mean, std = numbers("mean", False), numbers("std", True)
    names = preprocessing.get("class_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{where}: its preprocessing class_names must be a list of names, got {str(names)[:80]}")
    size = preprocessing.get("input_size", [32, 32])
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_INPUT_SIDE for s in size)
    ):
        raise CheckpointError(
            f"{where}: its preprocessing input_size must be two sides of 1 to {MAX_INPUT_SIDE} pixels, got {str(size)[:80]}"
        )
    return {"mean": mean, "std": std, "class_names": list(names), "input_size": [int(s) for s in size]}
