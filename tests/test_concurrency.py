"""Two fits started at once in one folder, on one fresh data_dir: both finish, nothing is shared by accident."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cifar_lightning.data import sources
from harness import CONFIG, SUBSET_CACHE, TINY, data_args


@pytest.mark.process
def test_two_fits_at_once_share_the_data_dir_safely(tmp_path, real_archive):
    data_dir = tmp_path / "data"
    command = [
        sys.executable,
        "-m",
        "cifar_lightning",
        "fit",
        "--config",
        CONFIG,
        *data_args(data_dir, real_archive),
        f"--data.cache_dir={tmp_path / 'cache'}",  # fresh: both runs want to decode the archive
        *TINY,
    ]
    runs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-3000:]
    cache = sources.read_cache(tmp_path / "cache" / SUBSET_CACHE.name)
    assert cache is not None and len(cache.train_images) == 4_000  # the shipped subset, decoded whole
    # each run has its own folder, config and checkpoint
    versions = sorted(p.name for p in (tmp_path / "lightning_logs").iterdir())
    assert versions == ["version_0", "version_1"]
    for version in versions:
        assert (tmp_path / "lightning_logs" / version / "config.yaml").is_file()
        assert (tmp_path / "lightning_logs" / version / "checkpoints" / "last.ckpt").is_file()
    assert not list((tmp_path / "cache").glob(".*.partial")) and not data_dir.exists()  # data_dir is only read
