"""What a plain `pip install` gets: the configs, the console scripts, the license, the extras."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # from the committed files, as a clean clone builds it: a checkout's stale build/ would add removed modules
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (REPO / name).is_file() and not name.startswith(("results/", "tests/data/")):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (found,) = out.glob("cifar_lightning-*.whl")
    return found


def test_the_wheel_carries_the_package_every_config_and_the_license_but_not_the_lab(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    # the recipes and the add-on configs in their folders (configs/logger/, configs/search/)
    shipped = sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml"))
    assert any("/" in name for name in shipped)
    assert (
        len([n for n in names if n.startswith("cifar_lightning/demo/examples/") and n.endswith(".jpg")]) == 10
    )  # the demo's examples
    assert (
        sorted(
            n.removeprefix("cifar_lightning/configs/")
            for n in names
            if n.startswith("cifar_lightning/configs/") and n.endswith(".yaml")
        )
        == shipped
    )
    tracked = subprocess.run(
        ["git", "ls-files", "cifar_lightning"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    modules = sorted(name for name in tracked if name.endswith(".py"))
    assert sorted(n for n in names if n.endswith(".py")) == modules
    assert not [n for n in names if "results_table" in n or "frontier" in n]  # they write this repository's pages
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)


def test_one_console_script_and_the_extras(wheel):
    from packaging.requirements import Requirement

    metadata = zipfile.ZipFile(wheel)
    entry_points = next(metadata.read(n).decode() for n in metadata.namelist() if n.endswith("entry_points.txt"))
    assert "cifar-lightning = cifar_lightning.cli:main" in entry_points
    lines = next(metadata.read(n).decode() for n in metadata.namelist() if n.endswith("METADATA")).splitlines()
    requires = [
        Requirement(line.removeprefix("Requires-Dist: ")) for line in lines if line.startswith("Requires-Dist: ")
    ]
    assert {r.name for r in requires if r.marker and "export" in str(r.marker)} >= {
        "onnx"
    }  # export libraries are an extra
    assert {r.name for r in requires if r.marker and "loggers" in str(r.marker)} == {"wandb", "mlflow"}
    assert {r.name for r in requires if r.marker and "search" in str(r.marker)} >= {"optuna", "optuna-integration"}
    assert not {"wandb", "mlflow", "optuna"} & {
        r.name for r in requires if not r.marker
    }  # none of them for a plain install
    (lightning,) = [r for r in requires if r.name == "lightning"]
    # the two malicious releases can never be installed; the tested line can
    assert (
        not lightning.specifier.contains("2.6.2")
        and not lightning.specifier.contains("2.6.3")
        and lightning.specifier.contains("2.6.6")
    )


@pytest.mark.process
def test_the_installed_configs_are_found_outside_a_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    code = "from cifar_lightning import recipes; print(recipes.config_path('cnn.yaml'))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    path = Path(result.stdout.strip())
    assert result.returncode == 0 and path.is_file() and str(target) in str(path), result.stderr[-2000:]
    assert "SeedNet" in path.read_text()


def test_the_option_table_in_the_docs_matches_the_parser():
    from option_table import documented

    committed, generated = documented()
    assert committed == generated, "docs/configuration.md's option table is stale: run python scripts/option_table.py"
