"""Your own images as a user meets them: a read-only folder of odd class names at its own size (64 px) trains,
the fit says what it found, every verb keeps a quiet console, and every way of asking gives one answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cifar_lightning
from harness import REPO, tiny_run, with_helpers

CLASSES = ("chat", "oiseau bleu", 'say "hi", ok')  # a space, a comma and quotes: what a CSV must survive
SIDE = 64

# Run inside the fit's process: any write under the image folder fails as a read-only mount's would, for root
# too (an audit hook sees every open and every change to a path before it happens).
READ_ONLY = """
import os, sys
folder = os.path.realpath(sys.argv[1])
WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2] if len(args) > 2 else 0
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & WRITES)
        paths = [args[0]] if writing else []
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.replace", "os.chmod", "os.truncate", "os.link", "os.symlink"):
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        if os.path.realpath(os.fsdecode(path)).startswith(folder + os.sep):
            raise PermissionError(30, "Read-only file system", os.fsdecode(path))

sys.addaudithook(hook)
from cifar_lightning.cli import main
main(sys.argv[2:])
"""


def odd_folder(root: Path) -> Path:
    """``root/{train,test}/<class>/`` of 64-px images whose colour and stripes depend on the class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 6)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (SIDE, SIDE, 3)).astype(np.uint8)
                pixels[:: 2 + label, :, label] = 255  # one stripe pitch per class, fine enough to need 64 px
                Image.fromarray(pixels).save(root / split / name / f"{i:03d}.png")
    return root


def run(*args: str, cwd: Path, folder: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", READ_ONLY, str(folder), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=with_helpers({"OMP_NUM_THREADS": "1"}),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    noisy = [line for line in (done.stdout + done.stderr).splitlines() if "Warning" in line or "Tip" in line]
    assert noisy == [], f"{args[0]} printed {noisy}"  # a quiet console: the project's lines and the bar only
    return done


@pytest.mark.slow
def test_a_read_only_folder_of_64px_images_trains_exports_and_answers_once(tmp_path):
    import pandas

    folder = odd_folder(tmp_path / "images")
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    settings = [f"--data.data_dir={folder}", f"--data.cache_dir={tmp_path / 'cache'}", f"--data.image_size={SIDE}"]
    fit = run(
        "fit",
        "--config",
        str(REPO / "configs" / "fast.yaml"),
        *settings,
        "--data.val_size=6",
        *tiny_run(epochs=3, train_batches=4, batch_size=16),
        cwd=tmp_path,
        folder=folder,
    )
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before  # never written to
    (run_dir,) = (tmp_path / "lightning_logs").glob("version_*")
    found = json.loads((run_dir / "run.json").read_text())["found"]
    assert found["classes"] == list(CLASSES) and found["image_size"] == SIDE
    assert found["images"] == {"train": 66, "val": 6, "test": 18} and found["test_time_views"] == "flip"
    assert found["augmentation"]["shift_px"] == 4  # the recipe's 2 px at 32, scaled to 64
    assert f"images: 66 train, 6 validation, 18 test, read at {SIDE} x {SIDE} px" in fit.stdout
    assert 'classes: 3 (chat, oiseau bleu, say "hi", ok)' in fit.stdout and "horizontal flips p=0.5" in fit.stdout

    config, checkpoint = run_dir / "config.yaml", run_dir / "checkpoints" / "last.ckpt"
    run("test", "--config", str(config), "--ckpt_path", str(checkpoint), *tiny_run(), cwd=tmp_path, folder=folder)
    test_images = folder / "test" / "oiseau bleu"
    args = ["--config", str(config), "--ckpt_path", str(checkpoint), f"--data.predict_dir={test_images}"]
    run("predict", *args, cwd=tmp_path, folder=folder)
    run("export", "--config", str(config), "--ckpt_path", str(checkpoint), cwd=tmp_path, folder=folder)

    table = pandas.read_csv(run_dir / "predictions.csv")  # any CSV reader splits it right
    assert set(table["class"]) | set(table["class_2"]) | set(table["class_3"]) <= set(CLASSES)
    assert list(table.columns) == [
        "path",
        "class",
        "probability",
        "class_2",
        "probability_2",
        "class_3",
        "probability_3",
        "views",
    ]
    model = cifar_lightning.load(checkpoint)
    assert model.input_size == (SIDE, SIDE) and model.tta == "flip"
    files = sorted(str(p) for p in test_images.iterdir())
    answers = model.predict(files)
    assert answers[0].tta == "flip" and answers[0].probabilities.keys() == set(CLASSES)
    # one answer: the command line's CSV, load().predict and the exported program agree on each image
    rows = table.set_index("path")
    for file, answer in zip(files, answers):
        assert (
            rows.loc[file, "class"] == answer.label and abs(rows.loc[file, "probability"] - answer.probability) < 2e-3
        )
    program = torch.export.load(run_dir / "export" / "last" / "model.pt2").module()
    pixels = model.to_tensor(files)
    assert pixels.shape[1:] == (3, SIDE, SIDE)
    exported = program(pixels).softmax(1)
    assert torch.allclose(exported, torch.tensor([[a.probabilities[c] for c in CLASSES] for a in answers]), atol=1e-4)
    info = json.loads((run_dir / "export" / "last" / "model.json").read_text())
    assert info["input"]["shape"] == ["N", 3, SIDE, SIDE] and info["classes"] == list(CLASSES)


@pytest.mark.parametrize(
    "array",
    [
        np.full((8, 8), 200, np.uint8),  # grayscale, as a digits data set holds them
        np.full((8, 8, 1), 200, np.uint8),
        np.dstack([np.full((8, 8, 3), 200, np.uint8), np.zeros((8, 8, 1), np.uint8)]),  # RGBA
        np.full((8, 8, 3), 200 * 257, np.uint16),  # 16-bit
        np.full((8, 8), 200 / 255, np.float32),  # float in [0, 1]
    ],
    ids=["grayscale", "one channel", "RGBA", "16-bit", "float"],
)
def test_load_predict_takes_what_files_can_hold(array):
    model = cifar_lightning.load(REPO / "results" / "fast" / "last.ckpt")
    pixels = model.to_tensor(array)
    assert pixels.shape == (1, 3, 32, 32) and torch.allclose(pixels, torch.full_like(pixels, 200 / 255), atol=1 / 255)
    assert model.predict(array)[0].label in model.class_names
