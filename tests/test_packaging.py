"""What a plain `pip install` gets: the configs, the console scripts, the license, the extras."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (found,) = out.glob("cifar_lightning-*.whl")
    return found


def test_the_wheel_carries_every_config_and_the_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert sorted(Path(n).name for n in names if n.startswith("cifar_lightning/configs/")) == shipped
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)


def test_console_scripts_and_extras(wheel):
    metadata = zipfile.ZipFile(wheel)
    entry_points = next(metadata.read(n).decode() for n in metadata.namelist() if n.endswith("entry_points.txt"))
    assert "cifar-lightning = cifar_lightning.cli:main" in entry_points
    requires = next(metadata.read(n).decode() for n in metadata.namelist() if n.endswith("METADATA"))
    assert "Requires-Dist: onnx>=1.16; extra == \"export\"" in requires  # export libraries are an extra
    assert "lightning!=2.6.2,!=2.6.3,<2.7,>=2.6.0" in requires


def test_the_installed_configs_are_found_outside_a_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True, timeout=300)
    code = "from cifar_lightning import recipes; print(recipes.config_path('cnn.yaml'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=300)
    path = Path(result.stdout.strip())
    assert result.returncode == 0 and path.is_file() and str(target) in str(path), result.stderr[-2000:]
    assert "SeedNet" in path.read_text()


def test_the_option_table_in_the_docs_matches_the_parser():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "option_table.py"), "--check"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
