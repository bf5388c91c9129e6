"""`make train` passes the archive when it exists and falls back to the download otherwise."""

import subprocess
from harness import REPO



def dry_run(*args: str, target: str = "train") -> str:
    # -n prints the commands (venv setup included) without running them
    result = subprocess.run(["make", "-n", target, *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_train_passes_an_existing_archive(tmp_path):
    archive = tmp_path / "my-cifar.tar.gz"
    archive.write_bytes(b"")
    out = dry_run(f"ARCHIVE={archive}")
    assert f"-m cifar_lightning fit --config configs/cnn.yaml --data.archive {archive}" in out


def test_train_without_archive_falls_back_to_download(tmp_path):
    out = dry_run(f"ARCHIVE={tmp_path / 'missing.tar.gz'}")
    assert "-m cifar_lightning fit --config configs/cnn.yaml" in out and "--data.archive" not in out


def test_export_and_lr_find_targets(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"")
    out = dry_run("RUN=lightning_logs/version_3", f"ARCHIVE={archive}", target="export")
    assert (f"-m cifar_lightning.export --config lightning_logs/version_3/config.yaml "
            f"--ckpt_path lightning_logs/version_3/checkpoints/last.ckpt --data.archive {archive}") in " ".join(out.split())
    out = dry_run(f"ARCHIVE={archive}", target="lr-find")
    assert f"-m cifar_lightning.lr_find --config configs/cnn.yaml --data.archive {archive}" in out
