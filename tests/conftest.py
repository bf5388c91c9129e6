"""Shared fixtures: the test data (decoded once), a tiny synthetic image folder, one finished tiny run, the one-line contract."""

from __future__ import annotations

import io
import logging
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_lightning.data import sources

# jsonargparse warns once a process per deprecated call site's function: Lightning's own call would hide the project's
os.environ["JSONARGPARSE_DEPRECATION_WARNINGS"] = "all"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two test processes on a 2-core machine: one thread each, and the same for the
    # fits they start, instead of four threads fighting for two cores
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"

from harness import (
    CIFAR10_CLASSES,
    CONFIG,
    FULL_ARCHIVE,
    FULL_DATA_DIR,
    HAVE_FULL_COPY,
    SUBSET_ARCHIVE,
    SUBSET_DATA_DIR,
    data_args,
    main_in_process,
    one_line_error,
    tiny_run,
)


@pytest.fixture(scope="session")
def real_archive() -> Path:
    """The shipped subset of the real JPEG copy: what every test that needs real images but not all of them reads."""
    return SUBSET_ARCHIVE


@pytest.fixture(scope="session")
def real_data_dir(real_archive: Path) -> Path:
    sources.prepare(SUBSET_DATA_DIR, real_archive, download_ok=False)
    return SUBSET_DATA_DIR


@pytest.fixture(scope="session")
def real_images(real_archive: Path, tmp_path_factory) -> Path:
    """The shipped subset's image files (``cifar10-jpeg/{train,test}/<class>/*.jpg``), unpacked once."""
    import tarfile

    root = tmp_path_factory.mktemp("real-images")
    with tarfile.open(real_archive) as tar:
        tar.extractall(root, filter="data")
    return root / "cifar10-jpeg"


@pytest.fixture(scope="session")
def full_copy() -> Path:
    """The whole JPEG copy, decoded once into its own data_dir, for tests that need all of it; skipped,
    with the reason, without it (CI fails on any skip)."""
    if not HAVE_FULL_COPY:
        pytest.skip(
            f"needs the whole CIFAR-10 JPEG copy at {FULL_ARCHIVE} (set CIFAR10_ARCHIVE); the shipped subset is too small"
        )
    sources.prepare(FULL_DATA_DIR, FULL_ARCHIVE, download_ok=False)
    return FULL_ARCHIVE


@pytest.fixture(scope="session")
def full_data_dir(full_copy: Path) -> Path:
    return FULL_DATA_DIR


def make_image_folder(root: Path, train_per_class: int = 6, test_per_class: int = 2, size: int = 32) -> Path:
    """``root/{train,test}/<class>/*.png`` of random images whose mean colour depends on the class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3)).astype(np.int64)
                pixels = ((pixels + 25 * label) % 256).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


def make_python_batches_archive(path: Path, per_batch: int = 4, dataset: str = "cifar10") -> Path:
    """A miniature ``cifar-10-python.tar.gz`` or ``cifar-100-python.tar.gz`` in the official layout: pickled
    dicts of a uint8 array and label lists (protocol 2, as the official Python 2 files)."""
    import pickle
    import tarfile

    rng = np.random.default_rng(0)
    layout = sources.PYTHON_LAYOUTS[dataset]
    folder = path.parent / "build" / layout.folder
    folder.mkdir(parents=True)
    fine, coarse = [f"fine{i}" for i in range(per_batch)], ["coarse0", "coarse1"]
    for name in [*layout.train, layout.test]:
        labels = list(range(per_batch))
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": labels}
        if dataset != "cifar10":
            batch = {"data": batch["data"], "fine_labels": labels, "coarse_labels": [i % 2 for i in labels]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = (
        {"label_names": CIFAR10_CLASSES}
        if dataset == "cifar10"
        else {"fine_label_names": fine, "coarse_label_names": coarse}
    )
    (folder / layout.meta).write_bytes(pickle.dumps({k: list(v) for k, v in meta.items()}, protocol=2))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=layout.folder)
    return path


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
        reporter.write_line(
            f"error: {skipped} test(s) skipped, and CI runs every test (CIFAR_LIGHTNING_NO_SKIPS=1)", red=True
        )
        session.exitstatus = 1


FINISHED_EPOCHS = 2


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, real_data_dir, real_archive) -> Path:
    """One finished tiny fit (2 epochs of 3 steps) through the real entry point, in this process; its
    working directory, holding lightning_logs/version_0 and fit.log (what the fit printed and logged)."""
    from cifar_lightning.cli import main

    work = tmp_path_factory.mktemp("finished-run")
    printed = io.StringIO()
    handler = logging.StreamHandler(printed)  # Lightning's messages go through its logger
    logging.getLogger("lightning.pytorch").addHandler(handler)
    previous = os.getcwd()
    os.chdir(work)
    try:
        with redirect_stdout(printed), redirect_stderr(printed):
            main(
                ["fit", "--config", CONFIG, *data_args(real_data_dir, real_archive), *tiny_run(epochs=FINISHED_EPOCHS)]
            )
    except SystemExit as stopped:
        pytest.fail(f"the shared tiny fit failed (exit {stopped.code}): {printed.getvalue()[-3000:]}")
    finally:
        os.chdir(previous)
        logging.getLogger("lightning.pytorch").removeHandler(handler)
    (work / "fit.log").write_text(printed.getvalue())
    return work


@pytest.fixture
def finished_copy(tmp_path, finished_run) -> Path:
    """A copy of the finished tiny run's working directory, for a test that writes into it."""
    import shutil

    return Path(shutil.copytree(finished_run, tmp_path / "finished-run"))


@pytest.fixture
def refused(capsys):
    """``refused(*args)`` runs ``cli.main`` in-process and asserts the one-line contract: exit code 2, one
    ``error:`` line and no traceback; returns that line."""

    def run(*args: str, code: int = 2) -> str:
        return one_line_error(main_in_process(list(args), capsys), code).strip().splitlines()[-1]

    return run
