"""Your own small images: a folder of any classes trains as it is, its classes and their number taken from the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import cifar_lightning
from cifar_lightning.lightning_cli import run_cli
from harness import CACHE_DIR, CIFAR10_CLASSES, CONFIG, REPO, TINY, data_args, main_in_process, tiny_run

SHAPES = ("circle", "square", "triangle")  # the class folders; sorted, so also the label order
SIDE = 48  # pixels: not the network's 32, so every image is resized on decode
MODES = ("RGB", "L", "P", "RGBA")  # colour, grayscale, palette and transparent files, converted to RGB


def draw_shape(shape: str, rng: np.random.Generator, mode: str) -> Image.Image:
    """A bright filled shape of random size and place on a dark background."""
    image = Image.new("RGB", (SIDE, SIDE), tuple(int(v) for v in rng.integers(0, 60, 3)))
    half = int(rng.integers(9, 14))
    x, y = (int(v) for v in rng.integers(half + 2, SIDE - half - 2, 2))
    fill = tuple(int(v) for v in rng.integers(160, 256, 3))
    box = (x - half, y - half, x + half, y + half)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(x, y - half), (x - half, y + half), (x + half, y + half)], fill=fill)
    return image.convert(mode)


def make_shapes_folder(root: Path, counts: dict[str, int], shapes=SHAPES) -> Path:
    """``root/<split>/<shape>/NNNN.png`` with ``counts[split]`` images of each shape, in turn of every mode
    (a folder named for no shape gets triangles)."""
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        for shape in shapes:
            (root / split / shape).mkdir(parents=True)
            for i in range(count):
                draw_shape(shape, rng, MODES[i % len(MODES)]).save(root / split / shape / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A data_dir holding one image folder of three shapes with its own val/ split."""
    data_dir = tmp_path_factory.mktemp("shapes-data")
    make_shapes_folder(data_dir / "shapes", {"train": 64, "val": 12, "test": 12})
    return data_dir


def shapes_args(data_dir: Path) -> list[str]:
    return [f"--data.data_dir={data_dir}", "--data.archive=null"]


@pytest.fixture(scope="module")
def shapes_run(shapes, tmp_path_factory):
    """The seed recipe fitted briefly on the shapes, with no setting about their classes."""
    work = tmp_path_factory.mktemp("shapes-run")
    previous = Path.cwd()
    import os

    os.chdir(work)
    try:
        fitted = run_cli(["fit", "--config", CONFIG, *shapes_args(shapes), *tiny_run(epochs=8, train_batches=6)])
    finally:
        os.chdir(previous)
    return work, fitted


@pytest.mark.slow
def test_the_classes_come_from_the_folders_and_reach_the_network(shapes_run):
    work, fitted = shapes_run
    assert fitted.datamodule.classes == SHAPES
    assert fitted.model.network.classifier.out_features == 3 and fitted.model.hparams.num_classes == 3
    assert fitted.datamodule.held_out[0].startswith("val/circle/")  # the folder's own val/ is the validation split
    (checkpoint,) = work.glob("lightning_logs/*/checkpoints/last.ckpt")
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["preprocessing"]["class_names"] == list(SHAPES) and saved["hyper_parameters"]["class_names"] == list(
        SHAPES
    )


@pytest.mark.slow
def test_a_tiny_fit_on_the_shapes_beats_chance_and_load_predict_names_them(shapes, shapes_run):
    work, _ = shapes_run
    (checkpoint,) = work.glob("lightning_logs/*/checkpoints/last.ckpt")
    model = cifar_lightning.load(checkpoint)
    files = sorted((shapes / "shapes" / "test").glob("*/*.png"))
    answers = model.predict([str(f) for f in files])
    assert set(answers[0].probabilities) == set(SHAPES)
    accuracy = np.mean([a.label == f.parent.name for a, f in zip(answers, files)])
    assert accuracy > 0.7, accuracy  # chance is 1/3; 48 steps reach about 0.95


@pytest.mark.slow
def test_predict_and_export_name_the_folders_classes(shapes, shapes_run, monkeypatch):
    import csv

    from cifar_lightning.inference.export import load_for_export

    work, _ = shapes_run
    (run,) = work.glob("lightning_logs/version_*")
    monkeypatch.chdir(work)
    config, checkpoint = str(run / "config.yaml"), str(run / "checkpoints" / "last.ckpt")
    photos = shapes / "shapes" / "test" / "square"
    run_cli(["predict", "--config", config, "--ckpt_path", checkpoint, f"--data.predict_dir={photos}", *tiny_run()])
    written = sorted(work.glob("lightning_logs/*/predictions.csv"), key=lambda p: p.stat().st_mtime)[-1]
    with written.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {row["class"] for row in rows} <= set(SHAPES)
    # the export names the classes the checkpoint records: the data's
    exported, classes = load_for_export(config, checkpoint)
    assert classes == list(SHAPES) and exported(torch.rand(2, 3, 32, 32)).shape == (2, 3)


def test_a_count_other_than_the_datas_is_refused(shapes, refused):
    line = refused("fit", "--config", CONFIG, *shapes_args(shapes), "--model.network.init_args.num_classes=7")
    assert "model.network.init_args.num_classes gives 7 classes but the data has 3 (circle, square, triangle)" in line


def test_a_network_whose_width_the_data_cannot_set_is_one_line_before_training(shapes, refused):
    line = refused("fit", "--config", CONFIG, *shapes_args(shapes), "--model.network=helpers.TenOutputsNet", *TINY)
    assert "the network gives 10 outputs an image but there are 3 classes" in line


def test_a_cifar10_checkpoint_is_refused_on_other_classes(shapes, finished_run, refused):
    run = finished_run / "lightning_logs" / "version_0"
    line = refused(
        "test", "--config", run / "config.yaml", "--ckpt_path", run / "checkpoints" / "last.ckpt", *shapes_args(shapes)
    )
    assert (
        "gives 10 classes (airplane, automobile, bird, cat, deer, ...) but the data has 3" in line
        and "--data.data_dir" in line
    )


def test_a_checkpoint_of_as_many_classes_with_other_names_is_refused(finished_run, tmp_path, refused):
    """Ten folders that are not CIFAR-10's: the count agrees, the classes do not."""
    make_shapes_folder(tmp_path / "ten", {"train": 1, "test": 1}, shapes=[f"shape{i}" for i in range(10)])
    run = finished_run / "lightning_logs" / "version_0"
    line = refused(
        "test",
        "--config",
        run / "config.yaml",
        "--ckpt_path",
        run / "checkpoints" / "last.ckpt",
        *shapes_args(tmp_path),
    )
    assert (
        "model.class_names gives 10 classes (airplane, automobile, bird, cat, deer, ...) but the data has 10 (shape0"
        in line
    )


@pytest.mark.slow
def test_configs_and_checkpoints_that_state_ten_classes_keep_loading(
    real_data_dir, real_archive, tmp_path, monkeypatch
):
    """results/fast was saved when every config stated num_classes: 10, in the model and in the network."""
    monkeypatch.chdir(tmp_path)
    fast = REPO / "results" / "fast"
    assert "num_classes: 10" in (fast / "config.yaml").read_text()
    tested = run_cli(
        [
            "test",
            "--config",
            str(fast / "config.yaml"),
            "--ckpt_path",
            str(fast / "last.ckpt"),
            *data_args(real_data_dir, real_archive),
            *TINY,
        ]
    )
    assert (
        tested.model.hparams.class_names == list(CIFAR10_CLASSES) and tested.trainer.callback_metrics["test/acc"] > 0.5
    )


def test_a_split_that_leaves_a_class_no_validation_image_is_one_line(tmp_path, refused):
    make_shapes_folder(tmp_path / "few", {"train": 2, "test": 1})
    line = refused("fit", "--config", CONFIG, *shapes_args(tmp_path), "--data.val_size=2", *TINY)
    assert line.startswith("error: class ") and "leaves it no validation image" in line and "val/ folder" in line


@pytest.mark.slow
def test_cifar100_is_a_setting_whose_classes_reach_the_network(tmp_path, monkeypatch):
    from conftest import make_python_batches_archive

    monkeypatch.chdir(tmp_path)
    archive = make_python_batches_archive(tmp_path / "cifar-100-python.tar.gz", per_batch=5, dataset="cifar100")
    settings = ["--config", CONFIG, f"--data.data_dir={tmp_path / 'data'}", f"--data.archive={archive}"]
    fitted = run_cli(["fit", *settings, "--data.dataset=cifar100", "--data.val_size=0", *TINY, "--data.batch_size=4"])
    assert fitted.model.network.classifier.out_features == 5 and fitted.datamodule.classes[0] == "fine0"


@pytest.mark.slow
def test_explain_and_the_demo_name_the_folders_classes(shapes, shapes_run, tmp_path, capsys):
    from cifar_lightning.data import sources

    work, _ = shapes_run
    (checkpoint,) = work.glob("lightning_logs/*/checkpoints/last.ckpt")
    photos = sorted((shapes / "shapes" / "test" / "circle").glob("*.png"))[:2]
    explained = main_in_process(["explain", "--ckpt_path", checkpoint, *photos, "--out", tmp_path / "out"], capsys)
    assert explained.returncode == 0, explained.stderr[-3000:]
    answers = [
        line.split(": ", 1)[1].split(" (")[0]
        for line in explained.stdout.splitlines()
        if line.startswith(str(photos[0].parent))
    ]
    assert len(answers) == 2 and set(answers) <= set(SHAPES)
    # the demo's misclassified tab finds this data's test split among the caches by its classes
    assert sources.cache_of_classes(CACHE_DIR, list(SHAPES)).test_images.shape == (36, 32, 32, 3)
    assert sources.cache_of_classes(CACHE_DIR, ["airplane", "automobile"]) is None


def test_a_tool_that_trains_builds_the_network_for_the_folders_classes(shapes):
    from cifar_lightning.lightning_cli import build

    assert build(CONFIG, shapes_args(shapes), classes_from_data=True).model.network.classifier.out_features == 3
