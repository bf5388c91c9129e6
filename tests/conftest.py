"""Shared fixtures: the test data (decoded once), a tiny synthetic image folder, one tiny fitted run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_lightning.data import sources

from harness import FULL_ARCHIVE, HAVE_FULL_COPY, REAL_ARCHIVE, REAL_DATA_DIR, cli, data_args, main_in_process, one_line_error, tiny_run


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


@pytest.fixture(scope="session")
def fitted_run(tmp_path_factory, real_data_dir, real_archive) -> Path:
    """One tiny fit through ``python -m cifar_lightning``; returns its working directory."""
    work = tmp_path_factory.mktemp("fit")
    result = cli("fit", "--config", str(Path(__file__).resolve().parents[1] / "configs" / "cnn.yaml"),
                 *data_args(real_data_dir, real_archive), *tiny_run(), cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    (work / "fit.log").write_text(result.stdout + result.stderr)
    return work


@pytest.fixture
def refused(capsys):
    """``refused(*args)`` runs ``cli.main`` in-process and asserts the one-line contract: exit code 2, one
    ``error:`` line and no traceback; returns that line."""

    def run(*args: str, code: int = 2) -> str:
        return one_line_error(main_in_process(list(args), capsys), code).strip().splitlines()[-1]

    return run
