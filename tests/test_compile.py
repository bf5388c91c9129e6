"""``--model.compile`` compiles the network for a fit, in place: checkpoints keep the network's own keys."""

from __future__ import annotations

import pytest
import torch

import helpers
from cifar_lightning.lightning_cli import run_cli
from harness import CONFIG, TINY, data_args


@pytest.mark.slow
def test_a_compiled_fit_saves_the_same_keys_as_a_plain_one(tmp_path, monkeypatch, real_data_dir, real_archive):
    keys = {}
    for mode in ("off", "default"):
        monkeypatch.chdir(tmp_path)
        (tmp_path / mode).mkdir()
        monkeypatch.chdir(tmp_path / mode)
        helpers.TRACED_BY_COMPILER.clear()
        run_cli(
            [
                "fit",
                "--config",
                CONFIG,
                *data_args(real_data_dir, real_archive),
                *TINY,
                "--model.network=helpers.CompileProbeNet",
                f"--model.compile={mode}",
                "--trainer.limit_val_batches=0",
            ]
        )
        assert bool(helpers.TRACED_BY_COMPILER) == (mode != "off")  # compiled exactly when asked
        checkpoint = torch.load(tmp_path / mode / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
        keys[mode] = list(checkpoint["state_dict"])
    assert keys["default"] == keys["off"] and not any("_orig_mod" in k for k in keys["default"])
