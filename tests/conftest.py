"""Shared fixtures: a tiny synthetic image folder and the real JPEG archive, decoded once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_lightning.data import sources

REPO = Path(__file__).resolve().parents[1]
# The whole CIFAR-10 JPEG copy; CI has ../shared beside the clone. CIFAR10_ARCHIVE points elsewhere.
FULL_ARCHIVE = Path(os.environ.get("CIFAR10_ARCHIVE", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
# Without it, a real subset the repository ships: 400 training and 100 test images a class of the
# same copy, same layout (tests/data/make_subset.sh; its README names the origin).
SUBSET_ARCHIVE = REPO / "tests" / "data" / "cifar10-subset.tar.gz"
HAVE_FULL_COPY = FULL_ARCHIVE.is_file()
REAL_ARCHIVE = FULL_ARCHIVE if HAVE_FULL_COPY else SUBSET_ARCHIVE
# Decoded once and kept between test sessions (ignored by git), like a user's data/ folder.
REAL_DATA_DIR = REPO / ".cache" / ("test-data" if HAVE_FULL_COPY else "test-data-subset")
# the subset's 4,000 training images hold out 500 for validation (the recipes' 5,000 would leave none)
SUBSET_VAL_SIZE = 500


def real_data_args(data_dir: Path = REAL_DATA_DIR, archive: Path = REAL_ARCHIVE) -> list[str]:
    """Command-line settings that point a run at the test data (the whole copy or the subset)."""
    args = [f"--data.data_dir={data_dir}", f"--data.archive={archive}"]
    return args if HAVE_FULL_COPY else [*args, f"--data.val_size={SUBSET_VAL_SIZE}"]


@pytest.fixture(scope="session")
def real_archive() -> Path:
    return REAL_ARCHIVE


@pytest.fixture(scope="session")
def real_data_dir(real_archive: Path) -> Path:
    sources.prepare(REAL_DATA_DIR, real_archive, download_ok=False)
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def full_copy() -> Path:
    """The whole JPEG copy, for tests that need all of it; skipped, with the reason, without it."""
    if not HAVE_FULL_COPY:
        pytest.skip(f"needs the whole CIFAR-10 JPEG copy at {FULL_ARCHIVE} (set CIFAR10_ARCHIVE); the shipped subset is too small")
    return FULL_ARCHIVE


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


def pytest_sessionfinish(session, exitstatus):
    """With CIFAR_LIGHTNING_NO_SKIPS=1 (CI), a skipped test fails the run: nothing hides behind a skip."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if os.environ.get("CIFAR_LIGHTNING_NO_SKIPS") == "1" and skipped and exitstatus == 0:
        reporter.write_line(f"error: {skipped} test(s) skipped, and CI runs every test (CIFAR_LIGHTNING_NO_SKIPS=1)", red=True)
        session.exitstatus = 1
