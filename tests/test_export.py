"""TorchScript and ONNX exports of a checkpoint give its logits on real test images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_lightning.cli import build
from test_cli import data_args

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "results" / "seed-cnn"  # a committed, trained checkpoint and its config
N = 256


@pytest.fixture(scope="module")
def exported(tmp_path_factory, real_data_dir, real_archive) -> Path:
    out = tmp_path_factory.mktemp("export")
    command = [sys.executable, "-m", "cifar_lightning.export", "--config", str(RUN / "config.yaml"),
               "--ckpt_path", str(RUN / "last.ckpt"), "--out", str(out), *data_args(real_data_dir, real_archive)]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def reference(real_data_dir, real_archive):
    """The checkpoint's logits on the first N test images, through the project's own data pipeline."""
    built = build(str(RUN / "config.yaml"), data_args(real_data_dir, real_archive))
    model, dm = built.model, built.datamodule
    model.load_state_dict(torch.load(RUN / "last.ckpt", weights_only=True)["state_dict"])
    dm.prepare_data()
    dm.setup("test")
    images = torch.stack([dm.test_set[i][0] for i in range(N)])
    with torch.no_grad():
        logits = model.eval()(images)
    pixels = torch.from_numpy(dm.test_set.images[:N]).permute(0, 3, 1, 2).float() / 255  # what the export takes
    return pixels, logits, torch.from_numpy(dm.test_set.labels[:N])


def test_torchscript_matches_the_checkpoint(exported, reference):
    pixels, logits, labels = reference
    scripted = torch.jit.load(str(exported / "model.ts"))
    with torch.no_grad():
        out = scripted(pixels)
    assert (out - logits).abs().max() < 1e-4
    assert (out.argmax(1) == labels).float().mean() > 0.7  # the normalization inside is the right one


def test_onnx_matches_the_checkpoint(exported, reference):
    onnxruntime = pytest.importorskip("onnxruntime")
    pixels, logits, _ = reference
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(["logits"], {"images": pixels.numpy()})
    assert np.abs(out - logits.numpy()).max() < 1e-4
    info = json.loads((exported / "model.json").read_text())
    assert info["classes"][0] == "airplane" and info["input"]["range"] == [0, 1]
