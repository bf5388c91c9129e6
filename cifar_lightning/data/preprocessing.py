"""What an image goes through before the network, as a checkpoint records it: checked, since a checkpoint is data."""

from __future__ import annotations

import math
from typing import Any

from cifar_lightning.data.sources import MAX_CLASSES, MAX_IMAGE_SIZE
from cifar_lightning.errors import CheckpointError

# how many views each test-time level averages: the image; its mirror too; and both shifted along the two diagonals
TTA_VIEWS = {"none": 1, "flip": 2, "flip_shift": 6}


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
    if (
        not isinstance(names, (list, tuple))
        or not 2 <= len(names) <= MAX_CLASSES
        or not all(isinstance(n, str) for n in names)
    ):
        raise CheckpointError(
            f"{where}: its preprocessing class_names must be a list of 2 to {MAX_CLASSES:,} names, got {str(names)[:80]}"
        )
    size = preprocessing.get("input_size", [32, 32])
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and 8 <= s <= MAX_IMAGE_SIZE for s in size)
        or size[0] != size[1]
    ):
        raise CheckpointError(
            f"{where}: its preprocessing input_size must be two equal sides of 8 to {MAX_IMAGE_SIZE} pixels, the small "
            f"images these networks are for; got {str(size)[:80]}"
        )
    tta = preprocessing.get("tta", "none")  # checkpoints before the views were saved: one view
    if tta not in TTA_VIEWS:
        raise CheckpointError(f"{where}: its preprocessing tta must be none, flip or flip_shift, got {str(tta)[:40]}")
    return {"mean": mean, "std": std, "class_names": list(names), "input_size": [int(s) for s in size], "tta": tta}
