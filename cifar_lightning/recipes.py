"""Where the shipped recipes (configs/*.yaml) are, in a checkout or after ``pip install``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config_dir() -> Path:
    """The folder of the shipped configs: the checkout's configs/, else the installed package's copy."""
    if CHECKOUT_CONFIGS.is_dir():
        return CHECKOUT_CONFIGS
    return Path(str(resources.files("cifar_lightning") / "configs"))


def config_path(name: str) -> Path:
    return config_dir() / name


def main() -> None:
    print(config_dir())
