"""torch.export and ONNX exports of a checkpoint give its logits on real test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_lightning.data import sources
from harness import REPO, SUBSET_CACHE

pytestmark = pytest.mark.slow  # an export and two runtimes: `make test-fast` leaves them out

# The committed fast checkpoint: a trained network, so the check that the built-in
# normalization is the right one (accuracy) means something; the recipe config builds its network.
RUN = REPO / "results" / "fast"
FAST = str(REPO / "configs" / "fast.yaml")
N = 256


@pytest.fixture(scope="module")
def exported(tmp_path_factory, real_data_dir, real_archive) -> Path:
    from cifar_lightning.cli import main

    out = tmp_path_factory.mktemp("export") / "last"  # the export makes this folder itself
    main(
        [
            "export",
            "--config",
            FAST,
            "--ckpt_path",
            str(RUN / "last.ckpt"),
            "--out",
            str(out),
        ]
    )
    return out


@pytest.fixture(scope="module")
def reference(real_data_dir, real_archive):
    """The checkpoint's logits on the first N test images, through cifar_lightning.load (its own preprocessing)."""
    import cifar_lightning

    arrays = sources.read_cache(SUBSET_CACHE)
    pixels = torch.from_numpy(arrays.test_images[:N]).permute(0, 3, 1, 2).float() / 255  # what the export takes
    with torch.no_grad():
        logits = cifar_lightning.load(RUN / "last.ckpt")(pixels)
    return pixels, logits, torch.from_numpy(arrays.test_labels[:N])


def test_the_exported_program_matches_the_checkpoint(exported, reference):
    pixels, logits, labels = reference
    program = torch.export.load(exported / "model.pt2").module()
    with torch.no_grad():
        out = program(pixels)
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
