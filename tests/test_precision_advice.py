"""A bf16 preset on a CPU without bf16 instructions says which precision to pass."""

from __future__ import annotations

import pytest

from cifar_lightning.callbacks.precision_advice import cpu_flags
from cifar_lightning.lightning_cli import run_cli
from harness import REPO, TINY, data_args

WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
WITH = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"


def write(tmp_path, text: str):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_flags_are_read_from_cpuinfo(tmp_path):
    assert "avx512_bf16" in cpu_flags(write(tmp_path, WITH)) and "avx512_bf16" not in cpu_flags(
        write(tmp_path, WITHOUT)
    )
    assert cpu_flags(write(tmp_path, "no flags here")) is None and cpu_flags(tmp_path / "missing") is None


@pytest.mark.slow
@pytest.mark.parametrize(("cpuinfo", "warned"), [(WITHOUT, True), (WITH, False)])
def test_fast_preset_on_a_cpu_without_bf16_names_the_precision_to_pass(
    cpuinfo, warned, tmp_path, monkeypatch, recwarn, real_data_dir, real_archive
):
    monkeypatch.chdir(tmp_path)
    run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "fast.yaml"),
            *data_args(real_data_dir, real_archive),
            *TINY,
            f"--precision_advice.cpuinfo={write(tmp_path, cpuinfo)}",
        ]
    )
    assert any("pass --trainer.precision 32-true" in str(w.message) for w in recwarn) == warned
