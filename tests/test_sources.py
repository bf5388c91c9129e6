"""Data sources fail with one clear message that names the fix."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from cifar_lightning.data import sources
from cifar_lightning.errors import DataError


def offline(monkeypatch):
    """Route every download through a closed local port: offline on any machine."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


def test_offline_with_no_data_names_the_fix(tmp_path, monkeypatch):
    offline(monkeypatch)
    with pytest.raises(DataError, match=r"download failed.*--data.archive"):
        sources.prepare(tmp_path / "empty", None, download_ok=True)


def test_no_data_and_download_off(tmp_path):
    with pytest.raises(DataError, match="downloading is off"):
        sources.prepare(tmp_path, None, download_ok=False)


def test_missing_archive(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*--data.archive"):
        sources.prepare(tmp_path, tmp_path / "nope.tar.gz", download_ok=False)


def test_truncated_archive(tmp_path, real_archive):
    broken = tmp_path / "cifar10-jpeg.tar.gz"
    broken.write_bytes(real_archive.read_bytes()[:200_000])
    with pytest.raises(DataError, match="cannot be unpacked.*fetch it again"):
        sources.prepare(tmp_path / "data", broken, download_ok=False)


def test_checksum_mismatch(tmp_path, image_folder):
    import tarfile

    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(image_folder / "tiny-cifar", arcname="tiny-cifar")
    good = hashlib.sha256(archive.read_bytes()).hexdigest()
    (tmp_path / "tiny.tar.gz.sha256").write_text(f"{good}  tiny.tar.gz\n")
    sources.prepare(tmp_path / "ok", archive, download_ok=False)  # a matching checksum passes
    (tmp_path / "tiny.tar.gz.sha256").write_text("0" * 64 + "  tiny.tar.gz\n")
    with pytest.raises(DataError, match="does not match its checksum"):
        sources.prepare(tmp_path / "bad", archive, download_ok=False)


def test_missing_class_folder(image_folder):
    shutil.rmtree(image_folder / "tiny-cifar" / "train" / "cat")
    with pytest.raises(DataError, match="missing class folders: cat"):
        sources.prepare(image_folder, None, download_ok=False)


def test_missing_test_folder(image_folder):
    shutil.rmtree(image_folder / "tiny-cifar" / "test")
    with pytest.raises(DataError, match=r"has no test/ folder"):
        sources.prepare(image_folder, None, download_ok=False)


def test_unreadable_training_image(image_folder):
    bad = image_folder / "tiny-cifar" / "train" / "dog" / "9999.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=f"cannot read image {bad}"):
        sources.prepare(image_folder, None, download_ok=False)


def test_corrupt_cache_is_rebuilt(image_folder):
    cache = sources.prepare(image_folder, None, download_ok=False)
    expected = sources.read_cache(cache)
    cache.write_bytes(b"garbage")
    assert sources.read_cache(cache) is None
    sources.prepare(image_folder, None, download_ok=False)
    assert np.array_equal(sources.read_cache(cache).train_images, expected.train_images)


def test_cache_from_another_source_is_rebuilt(tmp_path, image_folder):
    cache = sources.prepare(image_folder, None, download_ok=False)
    stale = sources.Arrays(*(np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int64)) * 2)
    sources.write_cache(cache, stale, key="some other source")
    sources.prepare(image_folder, None, download_ok=False)
    assert len(sources.read_cache(cache).train_images) == 60


def test_two_image_folders_are_ambiguous(image_folder):
    shutil.copytree(image_folder / "tiny-cifar", image_folder / "copy")
    with pytest.raises(DataError, match="several image folders"):
        sources.prepare(image_folder, None, download_ok=False)


def make_python_batches_archive(path: Path, per_batch: int = 4) -> Path:
    """A miniature ``cifar-10-python.tar.gz`` in the official pickle layout."""
    import pickle
    import tarfile

    rng = np.random.default_rng(0)
    folder = path.parent / "build" / sources.PYTHON_BATCHES
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8), "labels": list(range(per_batch))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(sources.CLASSES)}))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=sources.PYTHON_BATCHES)
    return path


def test_cifar10_python_archive(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    # the miniature batches cannot match the official files' md5 sums
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    archive = make_python_batches_archive(tmp_path / "cifar-10-python.tar.gz")
    arrays = sources.read_cache(sources.prepare(tmp_path / "data", archive, download_ok=False))
    assert arrays.train_images.shape == (20, 32, 32, 3) and arrays.test_images.shape == (4, 32, 32, 3)
    assert arrays.train_labels.tolist() == [0, 1, 2, 3] * 5


def test_corrupt_python_batches(tmp_path):
    archive = make_python_batches_archive(tmp_path / "cifar-10-python.tar.gz")  # md5 sums do not match
    with pytest.raises(DataError, match="incomplete or corrupt"):
        sources.prepare(tmp_path / "data", archive, download_ok=False)


def trust_miniature_batches(monkeypatch):
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)


def test_an_archive_wins_over_a_stale_image_folder(tmp_path, image_folder, monkeypatch):
    trust_miniature_batches(monkeypatch)
    archive = make_python_batches_archive(tmp_path / "cifar-10-python.tar.gz")
    arrays = sources.read_cache(sources.prepare(image_folder, archive, download_ok=False))
    # the archive's 20 training images, not the folder's 60, and the record names the archive
    assert arrays.train_labels.tolist() == [0, 1, 2, 3] * 5
    assert arrays.origin == str(archive.resolve())


def test_unpacking_leaves_every_file_in_data_dir_as_it_was(tmp_path, image_folder):
    # found by trying: an archive's top-level "notes/" replaced the user's notes/ folder, silently
    import tarfile

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("from the archive")
    archive = tmp_path / "copy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(image_folder / "tiny-cifar", arcname="tiny-cifar")  # the same name as the user's folder
        tar.add(tmp_path / "notes", arcname="notes")
    data_dir = image_folder
    (data_dir / "notes").mkdir()
    (data_dir / "notes" / "important.txt").write_text("the user's")
    (data_dir / "tiny-cifar" / "mine.txt").write_text("also the user's")
    before = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    sources.prepare(data_dir, archive, download_ok=False)
    after = {p: p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
    added = {p.relative_to(data_dir).as_posix() for p in set(after) - set(before)}
    assert {p: after.get(p) for p in before} == before
    assert added <= {sources.CACHE_NAME, ".prepare.lock"}


def image_folder_from(arrays: sources.Arrays, root: Path) -> Path:
    """The same images as an image folder: class by class, NNNN.png in the order the source listed them."""
    from PIL import Image

    for split, images, labels in (
        ("train", arrays.train_images, arrays.train_labels),
        ("test", arrays.test_images, arrays.test_labels),
    ):
        for label, name in enumerate(sources.CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for ordinal, index in enumerate(np.flatnonzero(labels == label)):
                Image.fromarray(images[index]).save(folder / f"{ordinal:04d}.png")
    return root


def test_the_split_holds_the_same_images_whatever_the_source(tmp_path, monkeypatch):
    from cifar_lightning.data.datamodule import split_indices

    trust_miniature_batches(monkeypatch)
    archive = make_python_batches_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=10)
    batches = sources.read_cache(sources.prepare(tmp_path / "batches", archive, download_ok=False))
    folder = sources.read_cache(
        sources.prepare(image_folder_from(batches, tmp_path / "folder"), None, download_ok=False)
    )
    assert not np.array_equal(batches.train_labels, folder.train_labels)  # listed in different orders
    held_out = []
    for arrays in (batches, folder):
        val, _ = split_indices(arrays.train_labels, 20, split_seed=0)
        held_out.append(sorted(arrays.train_images[i].tobytes() for i in val))
    assert held_out[0] == held_out[1]


def test_a_second_run_does_not_decode_and_an_edited_image_does(image_folder, monkeypatch):
    from PIL import Image

    sources.prepare(image_folder, None, download_ok=False)
    calls = []
    real = sources.decode_image_folder
    monkeypatch.setattr(sources, "decode_image_folder", lambda root: calls.append(root) or real(root))
    sources.prepare(image_folder, None, download_ok=False)
    assert calls == []  # writing the cache beside the source did not invalidate it
    edited = next(image_folder.rglob("train/cat/0000.png"))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(edited)
    arrays = sources.read_cache(sources.prepare(image_folder, None, download_ok=False))
    assert len(calls) == 1 and (arrays.train_images == 0).all(axis=(1, 2, 3)).any()
