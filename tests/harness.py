"""What the tests share: paths, the test data, the tiny-run limits, and running the real entry point.

Fixtures live in conftest.py; test-only callbacks that the CLI imports by class_path live in
helpers.py. No test module imports another.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cifar_lightning.data.sources import IMAGE_SIZE, archive_stem, cache_file

REPO = Path(__file__).resolve().parents[1]
# the decoded caches of every test and of the fits they start (XDG_CACHE_HOME is inherited), kept between
# test sessions (ignored by git) and never the user's own ~/.cache
os.environ["XDG_CACHE_HOME"] = str(REPO / ".cache" / "xdg")
CACHE_DIR = REPO / ".cache" / "xdg" / "cifar_lightning"
TESTS = Path(__file__).resolve().parent
CONFIG = str(REPO / "configs" / "cnn.yaml")

# The whole CIFAR-10 JPEG copy; CI has ../shared beside the clone. CIFAR10_ARCHIVE points elsewhere.
# Only the tests that need all of it use it (the full_copy fixture).
FULL_ARCHIVE = Path(os.environ.get("CIFAR10_ARCHIVE", REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))
HAVE_FULL_COPY = FULL_ARCHIVE.is_file()
# Every other test reads a real subset the repository ships: 400 training and 100 test images a
# class of the same copy, same layout (tests/data/make_subset.sh; its README names the origin).
# It decodes in seconds and sets up a fit in a quarter of the whole copy's time.
SUBSET_ARCHIVE = TESTS / "data" / "cifar10-subset.tar.gz"
# Decoded once and kept between test sessions (ignored by git), like a user's data/ folder.
SUBSET_DATA_DIR = REPO / ".cache" / "test-data-subset"
FULL_DATA_DIR = REPO / ".cache" / "test-data"
# the decoded caches the data module keeps, one per archive
SUBSET_CACHE = cache_file(CACHE_DIR, archive_stem(SUBSET_ARCHIVE), SUBSET_ARCHIVE, IMAGE_SIZE)
FULL_CACHE = cache_file(CACHE_DIR, archive_stem(FULL_ARCHIVE), FULL_ARCHIVE, IMAGE_SIZE)
# CIFAR-10's classes in label order: its own list, which is also the sorted order of its folders' names
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# the subset's 4,000 training images hold out 500 for validation (the recipes' 5,000 would leave none)
SUBSET_VAL_SIZE = 500


def tiny_run(
    epochs: int = 1, train_batches: int = 3, workers: int = 0, batch_size: int = 32, eval_batch_size: int = 64
) -> list[str]:
    """The limits of a run that takes seconds, not minutes: defined once, varied by argument."""
    return [
        f"--trainer.max_epochs={epochs}",
        f"--trainer.limit_train_batches={train_batches}",
        "--trainer.limit_val_batches=2",  # "1" would parse as 1.0: the whole set
        "--trainer.limit_test_batches=2",
        "--trainer.limit_predict_batches=2",
        "--trainer.enable_progress_bar=false",
        f"--data.num_workers={workers}",
        f"--data.batch_size={batch_size}",
        f"--data.eval_batch_size={eval_batch_size}",
        "--augmentation_preview.draws=0",  # a second a fit; its own tests turn it on (PREVIEW_ON)
    ]


PREVIEW_ON = "--augmentation_preview.draws=5"


TINY = tiny_run()


def data_args(data_dir: Path = SUBSET_DATA_DIR, archive: Path = SUBSET_ARCHIVE) -> list[str]:
    """Command-line settings that point a run at the test data: the subset, or with ``archive=FULL_ARCHIVE`` the whole copy."""
    args = [f"--data.data_dir={data_dir}", f"--data.archive={archive}"]
    return args if archive == FULL_ARCHIVE else [*args, f"--data.val_size={SUBSET_VAL_SIZE}"]


def with_helpers(env: dict | None = None) -> dict:
    """The environment of a subprocess that imports test-only callbacks (helpers.py) by class_path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), **(env or {})}


def cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m cifar_lightning ARGS`` in ``cwd``, the real entry point, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "cifar_lightning", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=with_helpers(env),
        timeout=timeout,
    )


@dataclass
class Finished:
    """What a command run in-process left: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def main_in_process(args: list[str], capsys) -> Finished:
    """``cifar_lightning.cli.main(args)`` in this process, as the console script runs it; capsys captures its output."""
    from cifar_lightning.cli import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    out = capsys.readouterr()
    return Finished(code, out.out, out.err)


def one_line_error(result: subprocess.CompletedProcess | Finished, code: int = 2) -> str:
    """Exit code ``code``, no traceback, no usage dump: the output ends in the one ``error:`` line."""
    assert result.returncode == code, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    return result.stderr


def assert_same(a, b, where: str = "") -> None:
    """Two checkpoints' contents are equal, tensors bit for bit; ``where`` names the first difference."""
    import torch

    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} vs {b}"
