"""The Makefile's targets call the entry point's verbs, and `make train` passes the archive only when it exists."""

import re
import subprocess

from cifar_lightning.cli import VERBS
from harness import REPO

MAKEFILE = (REPO / "Makefile").read_text()


def test_every_target_calls_a_verb_the_entry_point_has():
    called = re.findall(r"\$\(BIN\)/cifar-lightning ([\w-]+)", MAKEFILE)
    assert set(called) <= set(VERBS), set(called) - set(VERBS)
    assert {"fit", "export", "report", "lr-find"} <= set(called)
    assert "-m cifar_lightning." not in MAKEFILE  # no module paths: the verbs are the interface


def test_train_passes_the_archive_only_when_it_exists(tmp_path):
    archive = tmp_path / "my-cifar.tar.gz"
    archive.write_bytes(b"")
    for path, passed in ((archive, True), (tmp_path / "missing.tar.gz", False)):
        # -n prints the commands without running them
        out = subprocess.run(
            ["make", "-n", "train", f"ARCHIVE={path}"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        assert "cifar-lightning fit --config configs/cnn.yaml" in out
        assert (f"--data.archive {path}" in out) is passed


def test_the_commands_the_project_prints_run_in_the_users_shell(tmp_path):
    # found by trying: after `make train`, the resume hint said `python -m cifar_lightning ...`, and that
    # `python` was not the venv's (ModuleNotFoundError), or there was none
    import os
    import sys
    from pathlib import Path

    venv_bin = str(Path(sys.executable).parent)
    printed = "from cifar_lightning.errors import shell_command; print(shell_command())"
    for path, expected in (("/usr/bin:/bin", None), (f"{venv_bin}:/usr/bin:/bin", "cifar-lightning")):
        env = {**os.environ, "PATH": path}
        command = subprocess.run(
            [sys.executable, "-c", printed], cwd=REPO, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert expected is None or command == expected
        shell = subprocess.run(["sh", "-c", f"{command} --help"], cwd=REPO, env=env, capture_output=True, text=True)
        assert shell.returncode == 0 and "usage: cifar-lightning VERB" in shell.stdout, (command, shell.stderr)
