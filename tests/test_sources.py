"""Data sources fail with one clear message that names the fix."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_python_batches_archive

from cifar_lightning.data import sources
from cifar_lightning.errors import DataError
from harness import CIFAR10_CLASSES


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
    with pytest.raises(DataError, match="cannot be read.*fetch it again"):
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


def test_a_test_class_missing_from_train_is_refused(image_folder):
    shutil.rmtree(image_folder / "tiny-cifar" / "train" / "cat")
    with pytest.raises(DataError, match=r"test has class folders that train/ lacks \(cat\)"):
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
    stale = sources.Arrays(*(np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int64)) * 2, ("a", "b"))
    sources.write_cache(cache, stale, key="some other source")
    sources.prepare(image_folder, None, download_ok=False)
    assert len(sources.read_cache(cache).train_images) == 60


def test_two_image_folders_are_ambiguous(image_folder):
    shutil.copytree(image_folder / "tiny-cifar", image_folder / "copy")
    with pytest.raises(DataError, match="several image folders"):
        sources.prepare(image_folder, None, download_ok=False)


def test_cifar10_python_archive(tmp_path):
    archive = make_python_batches_archive(tmp_path / "cifar-10-python.tar.gz")
    arrays = sources.read_cache(sources.prepare(tmp_path / "data", archive, download_ok=False))
    assert arrays.train_images.shape == (20, 32, 32, 3) and arrays.test_images.shape == (4, 32, 32, 3)
    assert arrays.train_labels.tolist() == [0, 1, 2, 3] * 5
    assert arrays.classes == CIFAR10_CLASSES


def test_cifar100_is_a_setting_with_fine_labels_by_default(tmp_path):
    archive = make_python_batches_archive(tmp_path / "cifar-100-python.tar.gz", per_batch=6, dataset="cifar100")
    data_dir = tmp_path / "data"
    found = sources.read_cache(sources.prepare(data_dir, archive, download_ok=False))  # what it holds
    fine = sources.read_cache(sources.prepare(data_dir, archive, download_ok=False, dataset="cifar100"))
    coarse = sources.read_cache(sources.prepare(data_dir, archive, download_ok=False, dataset="cifar100-coarse"))
    assert found.classes == fine.classes == tuple(f"fine{i}" for i in range(6))
    assert fine.train_labels.tolist() == list(range(6)) and coarse.train_labels.tolist() == [0, 1] * 3
    assert coarse.classes == ("coarse0", "coarse1")
    assert fine.train_images.shape == (6, 32, 32, 3)
    with pytest.raises(DataError, match="holds no cifar-10-batches-py.*--data.dataset cifar10"):
        sources.prepare(data_dir, archive, download_ok=False, dataset="cifar10")


def test_a_batch_that_would_run_code_is_refused_before_it_runs(tmp_path):
    """A pickle is a program: one naming os.system (or any function but numpy's array builders) is refused."""
    import os
    import pickle
    import tarfile

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    archive = make_python_batches_archive(tmp_path / "cifar-10-python.tar.gz")
    folder = tmp_path / "build" / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": Payload(), "labels": []}, protocol=2))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    with pytest.raises(DataError, match=r"data_batch_3 is not a CIFAR python batch \(it names (posix|os)\.system"):
        sources.prepare(tmp_path / "data", archive, download_ok=False)
    assert not marker.exists()


def test_a_batch_of_millions_of_small_objects_is_refused_before_it_is_built(tmp_path):
    """Two bytes of pickle make an empty list: a small file that would build millions of objects is refused unread."""
    import pickle

    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": [[] for _ in range(600_000)], "labels": []}, protocol=2))
    with pytest.raises(
        DataError, match=r"data_batch_1 is not a CIFAR python batch \(it has more than 1,000,000 opcodes"
    ):
        sources.read_batch(batch.read_bytes(), str(batch))


def test_corrupt_python_batches(tmp_path):
    archive = make_python_batches_archive(tmp_path / "cifar-10-python.tar.gz")
    (tmp_path / "build" / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02}q\x00(truncated")
    import tarfile

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match="test_batch is not a CIFAR python batch"):
        sources.prepare(tmp_path / "data", archive, download_ok=False)


def test_an_archive_wins_over_a_stale_image_folder(tmp_path, image_folder):
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
    assert added == set()  # the cache goes to the cache folder


def image_folder_from(arrays: sources.Arrays, root: Path) -> Path:
    """The same images as an image folder: class by class, NNNN.png in the order the source listed them."""
    from PIL import Image

    for split, images, labels in (
        ("train", arrays.train_images, arrays.train_labels),
        ("test", arrays.test_images, arrays.test_labels),
    ):
        for label, name in enumerate(arrays.classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for ordinal, index in enumerate(np.flatnonzero(labels == label)):
                Image.fromarray(images[index]).save(folder / f"{ordinal:04d}.png")
    return root


def test_the_split_holds_the_same_images_whatever_the_source(tmp_path):
    from cifar_lightning.data.datamodule import split_indices

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
    monkeypatch.setattr(sources, "decode_image_folder", lambda *a: calls.append(a) or real(*a))
    sources.prepare(image_folder, None, download_ok=False)
    assert calls == []  # writing the cache beside the source did not invalidate it
    edited = next(image_folder.rglob("train/cat/0000.png"))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(edited)
    arrays = sources.read_cache(sources.prepare(image_folder, None, download_ok=False))
    assert len(calls) == 1 and (arrays.train_images == 0).all(axis=(1, 2, 3)).any()


def small_folder(root: Path, names=("a", "b", "c"), splits=("train", "test"), per_class: int = 2) -> Path:
    """``root/<split>/<name>/N.png``: a minimal image folder to break on purpose."""
    from PIL import Image

    for split in splits:
        for name in names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / split / name / f"{i}.png")
    return root


def test_classes_are_trains_folders_sorted_by_name(tmp_path):
    arrays = sources.read_cache(sources.prepare(small_folder(tmp_path / "d", ("pear", "Apple", "fig")), None, False))
    assert arrays.classes == ("Apple", "fig", "pear")
    assert arrays.train_labels.tolist() == [0, 0, 1, 1, 2, 2] and arrays.val_images is None


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: shutil.rmtree(d / "train" / "b"), r"has class folders that train/ lacks \(b\)"),
        (
            lambda d: [p.unlink() for p in (d / "test" / "a").iterdir()],
            r"class folder\(s\) test/a in .* hold no images",
        ),
        (
            lambda d: [shutil.rmtree(d / s / c) for s in ("train", "test") for c in "bc"],
            r"holds 1 class folder\(s\) \(a\); .* needs 2 to",
        ),
        (
            lambda d: small_folder(d, ("a",), ("val",)),
            r"val has no folder for class\(es\) b, c, so they would get no validation image",
        ),
        (lambda d: small_folder(d, ("A",), ("train",)), r"names differ only in case \(A, a\)"),
    ],
    ids=["test class not in train", "empty class", "one class", "val without a class", "names differing in case"],
)
def test_a_bad_image_folder_is_one_line_naming_the_fix(tmp_path, breakage, message):
    folder = small_folder(tmp_path / "d")
    breakage(folder)
    with pytest.raises(DataError, match=message):
        sources.prepare(folder, None, download_ok=False)


def test_two_sources_in_one_data_dir_keep_their_own_caches(tmp_path, image_folder, monkeypatch):
    """Each source has its own cache, so switching between them rebuilds neither."""
    cifar100 = make_python_batches_archive(tmp_path / "cifar-100-python.tar.gz", dataset="cifar100")
    first = [sources.prepare(image_folder, archive, False) for archive in (None, cifar100)]
    decoded = []
    for name in ("decode_image_folder", "decode_python_batches"):
        real = getattr(sources, name)
        monkeypatch.setattr(sources, name, lambda *a, real=real: decoded.append(a) or real(*a))
    again = [sources.prepare(image_folder, archive, False) for archive in (None, cifar100, None)]
    assert again == [*first, first[0]] and first[0] != first[1] and decoded == []
    assert len(sources.read_classes(first[0])) == 10 and sources.read_classes(first[1]) == (
        "fine0",
        "fine1",
        "fine2",
        "fine3",
    )
