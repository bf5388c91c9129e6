"""Untrusted input closed by design: an archive is read, never unpacked; sizes are read before anything is
allocated; only regular files are opened; one image reader turns every file the same way into pixels."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder, make_python_batches_archive
from PIL import Image

from cifar_lightning.data import images, sources
from cifar_lightning.errors import DataError
from harness import CACHE_DIR, REPO


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (links not followed) with its bytes: what must stay byte-identical."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            found[str(path.relative_to(root))] = b"link" if path.is_symlink() else path.read_bytes()
    return found


def add(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"") -> None:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.size = kind, link, len(data)
    tar.addfile(member, io.BytesIO(data) if data else None)


def hostile_archive(path: Path, folder: Path) -> Path:
    """A valid image folder, plus what escaped ``tarfile``'s ``filter="data"`` before Python 3.11.13
    (CVE-2025-4517): a chain of long folder names with symlinks past PATH_MAX, a hard link written through
    it, then every other way a member's name or type could point outside: absolute and ``..`` names,
    links out, a FIFO and a device where an image should be."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="tiny-cifar")
        long, steps, chain = "d" * 247, "abcdefghijklmnop", ""
        for step in steps:
            add(tar, os.path.join(chain, long), tarfile.DIRTYPE)
            add(tar, os.path.join(chain, step), tarfile.SYMTYPE, long)
            chain = os.path.join(chain, long)
        deep = os.path.join("/".join(steps), "l" * 254)
        add(tar, deep, tarfile.SYMTYPE, "../" * len(steps))
        add(tar, "escape", tarfile.SYMTYPE, deep + "/../..")
        add(tar, "hard", tarfile.LNKTYPE, "escape/notes.txt")
        add(tar, "hard", data=b"overwritten through a hard link")
        add(tar, "escape/outside.txt", data=b"created outside")
        add(tar, "../notes.txt", data=b"written by ..")
        add(tar, "/tmp/absolute-cifar-lightning.txt", data=b"written at an absolute path")
        add(tar, "tiny-cifar/train/cat/link.png", tarfile.SYMTYPE, "../../../../notes.txt")
        add(tar, "tiny-cifar/train/cat/fifo.png", tarfile.FIFOTYPE)
        add(tar, "tiny-cifar/train/cat/dev.png", tarfile.CHRTYPE)
    return path


def test_a_hostile_archive_is_read_and_nothing_outside_the_cache_changes(tmp_path):
    user = tmp_path / "user"
    data_dir = user / "data"
    data_dir.mkdir(parents=True)
    (user / "notes.txt").write_text("the user's, beside data_dir")
    (data_dir / "notes.txt").write_text("the user's, in data_dir")
    archive = hostile_archive(tmp_path / "evil.tar.gz", make_image_folder(tmp_path / "build"))
    before = tree(tmp_path)
    cache = sources.prepare(data_dir, archive, False, cache_dir=tmp_path / "cache")
    arrays = sources.read_cache(cache)
    assert len(arrays.train_images) == 60 and len(arrays.classes) == 10  # the images, and nothing else
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("cache/")} == before
    assert not Path("/tmp/absolute-cifar-lightning.txt").exists()


def npz_bytes(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)
    return out.getvalue()


def test_a_cache_that_claims_more_than_its_bound_is_decoded_again_unread(tmp_path, image_folder, monkeypatch):
    """1.5 million zero images compress to 7 MB: the zip's sizes are read first, and the cache is rebuilt."""
    cache = sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c")
    good = sources.read_cache(cache)
    monkeypatch.setattr(sources, "MAX_DECODED_BYTES", 1 << 20)  # the same check, a 1 MB bound: the test stays fast
    zeros = np.zeros((200, 32, 32, 3), np.uint8)  # 600 kB each, two of them, past the bound
    fields = {"train_images": zeros, "test_images": zeros, "train_labels": np.zeros(200, np.int64)}
    fields.update(test_labels=np.zeros(200, np.int64), classes=np.asarray(["a", "b"]))
    cache.write_bytes(npz_bytes(source=np.asarray("x"), origin=np.asarray("x"), **fields))
    assert len(cache.read_bytes()) < 50_000 and not sources.cache_fits(cache, 32)
    monkeypatch.undo()
    again = sources.read_cache(sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c"))
    assert np.array_equal(again.train_images, good.train_images)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda a: {**a, "train_labels": a["train_labels"] + 10},  # out of range
        lambda a: {**a, "train_images": a["train_images"].astype(np.float32)},  # float images
        lambda a: {**a, "classes": a["classes"][:1]},  # one class
        lambda a: {**a, "test_images": a["test_images"][:, :16]},  # a test split of the wrong shape
        lambda a: {**a, "test_labels": a["test_labels"][:3]},  # labels that do not match the images
        lambda a: {**a, "classes": np.zeros(10)},  # class names that are numbers
    ],
    ids=[
        "labels out of range",
        "float images",
        "one class",
        "test of another shape",
        "too few labels",
        "numeric classes",
    ],
)
def test_a_tampered_cache_is_never_used(tamper, tmp_path, image_folder):
    cache = sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c")
    with np.load(cache) as npz:
        fields = {name: npz[name] for name in npz.files}
    cache.write_bytes(npz_bytes(**tamper(fields)))
    assert sources.read_cache(cache) is None
    rebuilt = sources.read_cache(sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c"))
    assert np.array_equal(rebuilt.train_labels, fields["train_labels"])


def test_a_cache_whose_image_bytes_are_damaged_is_decoded_again(tmp_path, image_folder):
    """A flipped byte inside the images (headers, source and labels intact) fails the zip's CRC: rebuilt, not used."""
    cache = sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c")
    good = sources.read_cache(cache)
    with zipfile.ZipFile(cache) as zf:
        info = zf.getinfo("train_images.npy")
    data = bytearray(cache.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 200] ^= 0xFF  # past the .npy header
    cache.write_bytes(bytes(data))
    assert sources.read_cache(cache) is None
    again = sources.read_cache(sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c"))
    assert again is not None and np.array_equal(again.train_images, good.train_images)


def batch_archive_with(tmp_path: Path, name: str, payload: bytes, dataset: str = "cifar100") -> Path:
    archive = make_python_batches_archive(tmp_path / "batches.tar.gz", dataset=dataset)
    folder = tmp_path / "build" / sources.PYTHON_LAYOUTS[dataset].folder
    (folder / name).write_bytes(payload)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def test_a_batch_whose_array_would_take_gigabytes_is_refused_before_it_is_built(tmp_path):
    """``numpy.ndarray((400000, 3072), 'u1')`` through REDUCE: 1.2 GB from a few bytes of pickle."""

    class Huge:
        def __reduce__(self):
            return (np.ndarray, ((400_000, 3072), "u1"))

    archive = batch_archive_with(tmp_path, "train", pickle.dumps({"data": Huge(), "fine_labels": []}, protocol=2))
    with pytest.raises(
        DataError, match=r"train is not a CIFAR python batch \(it builds an array of shape \(400000, 3072\)"
    ):
        sources.prepare(tmp_path / "data", archive, False, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*.npz"))  # and no cache of it is left


def test_a_meta_of_too_many_classes_is_refused(tmp_path):
    names = [f"c{i}" for i in range(20_000)]
    meta = pickle.dumps({"fine_label_names": names, "coarse_label_names": ["a", "b"]}, protocol=2)
    with pytest.raises(DataError, match=r"meta has no list of 2 to 1,000 fine_label_names"):
        sources.prepare(tmp_path / "d", batch_archive_with(tmp_path, "meta", meta), False, cache_dir=tmp_path / "c")


def test_an_archive_of_many_members_is_refused_early(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_MEMBERS", 2_000)  # the same count at a size the test can build in a second
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(2_100):
            add(tar, f"x/notes/{i}.txt")  # empty files, passed over unread
    with pytest.raises(DataError, match="more than .* 2,000 files"):
        sources.prepare(tmp_path / "d", archive, False, cache_dir=tmp_path / "c")


def test_a_fifo_is_never_opened(tmp_path, image_folder):
    """``open`` on a FIFO waits for a writer for ever: a training folder skips it, a named one is refused."""
    fifo = image_folder / "tiny-cifar" / "train" / "cat" / "b.png"
    os.mkfifo(fifo)
    arrays = sources.read_cache(sources.prepare(image_folder, None, False, cache_dir=tmp_path / "c"))
    assert len(arrays.train_images) == 60
    with pytest.raises(DataError, match="is not a regular file"):
        images.read_image(fifo)
    predicted, paths = images.decode_folder(image_folder / "tiny-cifar" / "test", 32, 1000)
    assert len(paths) == 20


def saved(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_16_bit_and_float_images_are_scaled_by_their_range():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    sixteen = images.read_image(saved(Image.fromarray(ramp), "PNG"), "16-bit.png")
    assert abs(np.asarray(sixteen).mean() - 127.5) < 2  # not 97% white
    unit = Image.fromarray(np.full((8, 8), 0.5, np.float32), "F")
    assert np.asarray(images.read_image(saved(unit, "TIFF"), "float.tif")).mean() == pytest.approx(128, abs=1)
    assert images.from_array(ramp).getpixel((63, 63)) == (255, 255, 255)
    assert images.from_array(np.zeros((8, 8, 4), np.uint8)).size == (8, 8)  # RGBA, as files can hold


def test_a_phone_photos_orientation_is_applied():
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # white on the left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    photo = saved(Image.fromarray(pixels), "JPEG", exif=exif.tobytes())
    shown = np.asarray(images.read_image(photo, "photo.jpg"))
    assert shown.shape == (40, 20, 3) and shown[:20].mean() > 200 > 50 > shown[20:].mean()  # white on top


def mutants(data: bytes, seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        mutant = bytearray(data)
        for _ in range(int(rng.integers(1, 8))):
            position = int(rng.integers(0, len(mutant)))
            mutant[position] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            mutant = mutant[: int(rng.integers(1, len(mutant)))]
        yield bytes(mutant)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "QOI", "DDS"])
def test_mutated_images_are_read_or_refused_through_the_one_reader(fmt):
    """A fixed seed, a few hundred mutants a format: each is an image or the project's own DataError."""
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for mutant in mutants(saved(base, fmt), seed=len(fmt), count=150):
        try:
            assert images.decode_image(mutant, 32, "mutant").shape == (32, 32, 3)
        except DataError:
            pass


def test_mutated_batches_are_read_or_refused_through_the_batch_reader():
    batch = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]}
    for mutant in mutants(pickle.dumps(batch, protocol=2), seed=1, count=400):
        try:
            sources.read_batch(mutant, "mutant")
        except DataError:
            pass


def test_the_test_caches_are_in_the_tests_own_cache_folder():
    assert str(sources.default_cache_dir()) == str(CACHE_DIR)  # never the user's ~/.cache


# ---------------------------------------------------------------- the search's storage and YAML


def search(*extra: str, space: Path = REPO / "configs" / "search" / "fast.yaml") -> list[str]:
    return ["search", "--config", str(REPO / "configs" / "fast.yaml"), "--space", str(space), "--trials", "1", *extra]


def within(seconds: float, run):
    """``run()``'s result, or a failure (not a hang) when it has not returned after ``seconds``."""
    import threading

    result = []
    worker = threading.Thread(target=lambda: result.append(run()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting after {seconds} s"
    return result[0]


@pytest.mark.parametrize("password", ["se/cret", "p@ss/w:rd", "xx@/@y", "se%2Fcret"])
def test_a_storage_password_is_never_printed_whatever_it_holds(password, refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"postgresql+psycopg2://postgres:{password}@127.0.0.1:9/none"  # nothing listens on port 9
    line = refused(*search("--storage", url, "--data.data_dir=none"))
    assert "***@127.0.0.1" in line and password not in line and "cret" not in line and "ss/w" not in line


def test_a_malformed_storage_url_is_one_line_without_its_secret(refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = refused(*search("--storage", "postgresql://u:secret@[::1"))
    assert "is not a database URL" in line and "secret" not in line


def test_a_server_that_accepts_and_never_answers_is_given_up_on(refused, tmp_path, monkeypatch):
    import socket

    from cifar_lightning.tools import search as search_tool

    monkeypatch.setattr(search_tool, "CONNECT_TIMEOUT_S", 2)  # the same timeout, short enough for a test
    monkeypatch.chdir(tmp_path)
    with socket.socket() as server:  # the kernel accepts the connection; nobody ever answers it
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"postgresql+psycopg2://u@127.0.0.1:{server.getsockname()[1]}/db"
        line = within(60, lambda: refused(*search("--storage", url)))
    assert "the study's storage" in line and "timeout" in line.lower()  # given up on, not waited on for ever


def test_a_fifo_as_a_config_or_a_checkpoint_is_refused_before_it_is_opened(refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "fifo.yaml")
    assert "is not a regular file" in within(60, lambda: refused("fit", "--config", str(tmp_path / "fifo.yaml")))
    config = str(REPO / "configs" / "fast.yaml")
    line = within(60, lambda: refused("test", "--config", config, "--ckpt_path", str(tmp_path / "fifo.yaml")))
    assert "not a complete checkpoint (a folder or device, not a file)" in line


def test_a_fifo_named_to_explain_or_in_a_run_folder_is_never_opened(refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "a.png")
    fast = str(REPO / "results" / "fast" / "last.ckpt")
    line = within(60, lambda: refused("explain", "--ckpt_path", fast, str(tmp_path / "a.png")))
    assert "is not a regular file" in line
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "events.out.tfevents.1")  # found by trying: report waited on it for ever
    line = within(60, lambda: refused("report", str(tmp_path / "run"), "--out", str(tmp_path / "report")))
    assert "no TensorBoard event files" in line


def test_an_image_size_past_a_small_image_network_is_one_line_before_any_work(refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for size in ("4096", "4", "0"):
        line = refused("fit", "--config", str(REPO / "configs" / "fast.yaml"), f"--data.image_size={size}")
        assert f"data.image_size is {size}: give a side of 8 to 128 pixels" in line
    assert not (tmp_path / "lightning_logs").exists()


def test_a_fifo_as_a_journal_is_refused_before_it_is_opened(refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "journal")
    assert "is not a regular file" in within(
        60, lambda: refused(*search("--storage", f"journal:{tmp_path / 'journal'}"))
    )


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system [echo hi]", "2024-13-45", "{a: !!binary x}"])
def test_yaml_tags_and_impossible_dates_are_one_line_wherever_yaml_is_read(text, refused, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(f"model.optimizer.init_args.lr: {text}\n")
    assert "holds YAML this project does not read" in refused(*search(space=tmp_path / "space.yaml"))
    assert "holds YAML this project does not read" in refused(
        *search("--enqueue", f"model.optimizer.init_args.lr={text}")
    )
    (tmp_path / "fit.yaml").write_text(f"seed_everything: {text}\n")
    assert "holds YAML this project does not read" in refused("fit", "--config", str(tmp_path / "fit.yaml"))
    assert "holds YAML this project does not read" in refused("fit", "--config", f"seed_everything: {text}")


def test_two_workers_with_other_spaces_on_one_study_are_one_line(tmp_path):
    import optuna

    from cifar_lightning.errors import UserError
    from cifar_lightning.tools.search import objective

    key = "model.optimizer.init_args.lr"
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 'study.db'}")
    distribution = optuna.distributions.CategoricalDistribution([0.1, 0.2])
    study.add_trial(optuna.trial.create_trial(params={key: 0.1}, distributions={key: distribution}, value=0.5))
    run_trial = objective("configs/fast.yaml", [], {key: {"low": 0.01, "high": 1.0}}, set())
    with pytest.raises(UserError, match="searched over another space .*the same --space"):
        study.optimize(run_trial, n_trials=1)
