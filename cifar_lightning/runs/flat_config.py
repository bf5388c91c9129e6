"""A config as one level of dotted keys: how resume, compare, the HPARAMS tab and the docs' option table read it."""

from __future__ import annotations

from typing import Any


def flatten(tree: Any, prefix: str = "", keep_classes: bool = False) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``. Lists stay whole; so does a ``class_path`` mapping with ``keep_classes``."""
    if not isinstance(tree, dict) or (keep_classes and "class_path" in tree):
        return {prefix.removesuffix("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{key}.", keep_classes))
    return flat
