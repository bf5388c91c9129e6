"""Shared fixtures: a tiny synthetic image folder and the real JPEG archive, decoded once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_lightning.data import sources

REPO = Path(__file__).resolve().parents[1]
# The real CIFAR-10 JPEG copy; CI has ../shared beside the clone. CIFAR10_ARCHIVE points elsewhere.
REAL_ARCHIVE = Path(os.environ.get("CIFAR10_ARCHIVE", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
# Decoded once and kept between test sessions (ignored by git), like a user's data/ folder.
REAL_DATA_DIR = REPO / ".cache" / "test-data"


@pytest.fixture(scope="session")
def real_archive() -> Path:
    if not REAL_ARCHIVE.is_file():
        pytest.fail(f"the real CIFAR-10 archive is missing at {REAL_ARCHIVE}: set CIFAR10_ARCHIVE")
    return REAL_ARCHIVE


@pytest.fixture(scope="session")
def real_data_dir(real_archive: Path) -> Path:
    sources.prepare(REAL_DATA_DIR, real_archive, download_ok=False)
    return REAL_DATA_DIR


def make_image_folder(root: Path, train_per_class: int = 6, test_per_class: int = 2, size: int = 32) -> Path:
    """``root/{train,test}/<class>/*.png`` of random images whose mean colour depends on the class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(sources.CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3)).astype(np.int64)
                pixels = ((pixels + 25 * label) % 256).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A data_dir holding one wrapping folder around the image folder, as the shared archive does."""
    make_image_folder(tmp_path / "data" / "tiny-cifar")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def full_copy(real_archive: Path) -> Path:
    """The whole JPEG copy: tests that re-measure a reported number need all 10,000 test images."""
    return real_archive
