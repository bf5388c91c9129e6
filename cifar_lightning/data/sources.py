"""Where the images come from: a folder of labelled images, CIFAR-10's or CIFAR-100's python batches,
an archive of either, or torchvision's download.

Every source ends as the same uint8 arrays (images as N x 32 x 32 x 3, labels as N, the class
names), cached in ``data_dir``, one file per source, so a second run starts in seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import pickletools
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar_lightning.errors import DISK_FULL, DataError, ensure_writable_folder, why_not_writable

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows: concurrent runs on one data_dir are not guarded
    fcntl = None

IMAGE_SIZE = 32  # pixels, both sides; other sizes are resized on decode
# width x height an image file may have, read from its header before any pixel is decoded: 40
# megapixels decode to 120 MB of RGB, and a 20,000 x 20,000 PNG of zeros is under 400 KB on disk
MAX_IMAGE_PIXELS = 40_000_000
# what an archive may unpack to, counted from its members' headers as they stream: the JPEG copy is
# 60,000 files and about 200 MB, and a gzip "bomb" of a few MB could otherwise fill the disk
MAX_UNPACKED_BYTES = 4 << 30
MAX_MEMBERS = 1_000_000
CACHE_SUFFIX = "-uint8.npz"  # <source>-uint8.npz in data_dir: one cache per source, so two never mix
CACHE_FORMAT = 3  # bump when the cache's layout changes, so old caches are rebuilt
# an official python batch file is 30 MB (CIFAR-10) to 150 MB (CIFAR-100's train); a pickle holds
# what its bytes say, so the reader refuses anything larger before reading it
MAX_BATCH_FILE_BYTES = 200 << 20
# and at most this many pickle opcodes, counted before it is unpickled: CIFAR-100's train batch has
# about 200,000 (its labels and file names), while two bytes an opcode (an empty list appended) would
# let a 200 MB file build 100 million objects, several GB (a million opcodes: tens of MB)
MAX_BATCH_OPCODES = 1_000_000

Dataset = Literal["cifar10", "cifar100", "cifar100-coarse"]


@dataclass(frozen=True)
class PythonBatches:
    """One of the official python layouts: its folder, batch files, and where labels and names are."""

    torchvision_class: str  # the torchvision dataset that downloads it
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    names_key: str
    labels_key: str

    @property
    def title(self) -> str:
        return self.torchvision_class.replace("CIFAR", "CIFAR-")


CIFAR100_FINE = PythonBatches(
    "CIFAR100", "cifar-100-python", ("train",), "test", "meta", "fine_label_names", "fine_labels"
)
PYTHON_LAYOUTS: dict[str, PythonBatches] = {
    "cifar10": PythonBatches(
        "CIFAR10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        "label_names",
        "labels",
    ),  # fmt: skip
    "cifar100": CIFAR100_FINE,
    "cifar100-coarse": dataclasses.replace(CIFAR100_FINE, names_key="coarse_label_names", labels_key="coarse_labels"),
}
SPLITS = ("train", "val", "test")  # an image folder's sub-folders; val/ is optional


@dataclass(frozen=True)
class Arrays:
    train_images: np.ndarray  # uint8, N x 32 x 32 x 3
    train_labels: np.ndarray  # int64, N
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]  # label i is classes[i]
    val_images: np.ndarray | None = None  # an image folder's val/, when it has one
    val_labels: np.ndarray | None = None
    origin: str = ""  # the folder or archive the images were decoded from


# ---------------------------------------------------------------- archive


def published_sha256(archive: Path) -> str | None:
    """The SHA-256 in ``<archive>.sha256`` beside the archive, None when there is none."""
    sidecar = archive.with_name(archive.name + ".sha256")
    if not sidecar.is_file():
        return None
    with sidecar.open("rb") as f:
        words = f.read(1024).decode("ascii", errors="replace").split()  # "<64 hex digits>  <name>"; read no further
    expected = words[0].lower() if words else ""
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise DataError(
            f"checksum file {sidecar} does not start with a SHA-256 (64 hex digits): fetch it again with the archive, or delete it"
        )
    return expected


def verify_checksum(archive: Path) -> None:
    """Compare against ``<archive>.sha256`` when one sits beside the archive."""
    expected = published_sha256(archive)
    if expected is not None and file_digest(archive) != expected:
        raise DataError(
            f"archive {archive} does not match its checksum in {archive.name}.sha256 "
            "(truncated or corrupt download?): fetch the archive again"
        )


def bad_archive(archive: Path, err: BaseException) -> DataError:
    return DataError(f"archive {archive} cannot be unpacked ({err}): it is truncated or not a .tar.gz; fetch it again")


def cannot_write(data_dir: Path, what: str, err: OSError) -> DataError:
    if err.errno not in DISK_FULL:
        return DataError(
            f"cannot {what} {data_dir} ({why_not_writable(err)}): make it writable, or pick another --data.data_dir"
        )
    return DataError(
        f"cannot {what} {data_dir} ({err.strerror}): free disk space there (the JPEG copy needs about 420 MB "
        "unpacked and decoded) or pick another --data.data_dir"
    )


@contextmanager
def unpacked(archive: Path, data_dir: Path):
    """Unpack ``archive`` into a private temporary folder in ``data_dir`` and yield it; it is removed
    afterwards. Only the decoded cache is kept, so nothing the user keeps in ``data_dir`` is touched.
    """
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist: check --data.archive (or the Makefile's ARCHIVE)")
    verify_checksum(archive)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive, "r|*") as tar:  # a stream: each member's header is read before its data
                total = members = 0
                for member in tar:
                    total, members = total + member.size, members + 1
                    if total > MAX_UNPACKED_BYTES or members > MAX_MEMBERS:
                        raise DataError(
                            f"archive {archive} unpacks to more than {MAX_UNPACKED_BYTES >> 30} GB or {MAX_MEMBERS:,} files, "
                            "far more than a small-image data set: pass the archive you meant"
                        )
                    tar.extract(member, tmp, filter="data")  # "data" refuses absolute paths and links out of tmp
        except OSError as err:
            if err.errno is not None:  # the folder written to failed (full, read-only), not the archive
                raise cannot_write(data_dir, f"unpack {archive.name} into", err) from None
            raise bad_archive(archive, err) from None  # gzip's BadGzipFile: an OSError without errno
        except (tarfile.TarError, EOFError, zipfile.BadZipFile) as err:
            raise bad_archive(archive, err) from None
        yield Path(tmp)


# ---------------------------------------------------------------- locating a source


def _candidates(data_dir: Path) -> list[Path]:
    """``data_dir`` itself and its direct sub-folders: one wrapping folder is allowed."""
    if not data_dir.is_dir():
        return []
    subdirs = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [data_dir, *subdirs]


def find_python_batches(data_dir: Path, layout: PythonBatches) -> Path | None:
    """The folder holding ``layout``'s batches folder, at ``data_dir`` or one level below."""
    for root in _candidates(data_dir):
        if (root / layout.folder / layout.meta).is_file():
            return root
    return None


def find_image_folder(data_dir: Path) -> Path | None:
    """The folder holding ``train/`` and ``test/``, at ``data_dir`` or one level below."""
    roots = [r for r in _candidates(data_dir) if (r / "train").is_dir() or (r / "test").is_dir()]
    if len(roots) > 1:
        raise DataError(
            f"{data_dir} holds several image folders ({', '.join(str(r) for r in roots)}): "
            "keep one, or point --data.data_dir at the one you mean"
        )
    return roots[0] if roots else None


# ---------------------------------------------------------------- an image folder


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def class_folders(root: Path) -> tuple[tuple[str, ...], dict[str, dict[str, list[Path]]]]:
    """The classes (``train/``'s folders, sorted by name) and each split's image files by class,
    or one line that says what is wrong with the folder."""
    splits: dict[str, dict[str, list[Path]]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            if split == "val":
                continue
            raise DataError(
                f"image folder {root} has no {split}/ folder: expected {root}/{{train,test}}/<class>/<image files>"
            )
        folders = [p for p in _visible(split_dir) if p.is_dir()]
        by_case: dict[str, list[str]] = {}
        for folder in folders:
            by_case.setdefault(folder.name.casefold(), []).append(folder.name)
        clashes = [names for names in by_case.values() if len(names) > 1]
        if clashes:
            raise DataError(
                f"{split_dir} has class folders whose names differ only in case ({', '.join(clashes[0])}): "
                "they would be one class on some file systems and two on others; rename or merge them"
            )
        splits[split] = {folder.name: [p for p in _visible(folder) if p.is_file()] for folder in folders}
    classes = tuple(sorted(splits["train"]))
    if len(classes) < 2:
        raise DataError(
            f"{root / 'train'} holds {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); a classifier "
            "needs at least two: one folder of images per class, train/<class>/*"
        )
    for split, found in splits.items():
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(
                f"{root / split} has class folders that train/ lacks ({', '.join(unknown[:10])}): the classes are "
                "train/'s folders; add their training images to train/, or remove them"
            )
        empty = [name for name, files in found.items() if not files]
        if empty:
            raise DataError(
                f"class folder(s) {', '.join(f'{split}/{name}' for name in empty[:10])} in {root} hold no images: "
                "add images, or remove the folder"
            )
    if "val" in splits:
        unseen = [name for name in classes if name not in splits["val"]]
        if unseen:
            raise DataError(
                f"{root / 'val'} has no folder for class(es) {', '.join(unseen[:10])}, so they would get no "
                "validation image: add val/<class>/ images for each class, or remove val/ (then val_size images "
                "of train/ are held out)"
            )
    return classes, splits


def decode_image_folder(root: Path) -> Arrays:
    """``{train,test}/<class>/*`` (and ``val/<class>/*`` when present), every image resized to 32 x 32."""
    classes, splits = class_folders(root)
    decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, found in splits.items():
        images, labels = [], []
        for name, files in found.items():
            images += [decode_image(path) for path in files]
            labels += [classes.index(name)] * len(files)
        decoded[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
    val = decoded.get("val", (None, None))
    return Arrays(*decoded["train"], *decoded["test"], classes, *val)


def read_image(path: str | Path) -> Image.Image:
    """An image file PIL reads, as RGB; its size is read from the header and bounded by ``MAX_IMAGE_PIXELS``
    before any pixel is decoded. Raises ``DataError`` naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # not a warning here: a refusal
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DataError(
                        f"image {path} is {width} x {height} pixels, more than the {MAX_IMAGE_PIXELS // 10**6} megapixels "
                        "this project decodes: shrink it first (the network sees 32 x 32)"
                    )
                return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # PIL's own bounds, met at open
        raise DataError(
            f"image {path} is more than the {MAX_IMAGE_PIXELS // 10**6} megapixels this project decodes ({err}): shrink it first"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path} ({err}): delete or replace the file") from None


def decode_image(path: Path) -> np.ndarray:
    """Any image PIL reads, as 32 x 32 x 3 uint8 RGB. Raises ``DataError`` naming the file."""
    image = read_image(path)
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def skipped_files(paths: list[str], where: Path | str) -> str:
    """The warning for files that could not be read (or were too large to decode), naming at most ten."""
    named = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
    return f"skipped {len(paths)} unreadable or oversized file(s) in {where}: {named}"


def decode_folder(folder: Path) -> tuple[np.ndarray, list[str]]:
    """Every readable image under ``folder`` (any depth), resized to 32x32, and their paths.

    Unreadable files are skipped with a warning that lists them.
    """
    if not folder.is_dir():
        raise DataError(f"predict folder {folder} does not exist: check --data.predict_dir")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images, paths, skipped = [], [], []
    for path in files:
        try:
            images.append(decode_image(path))
            paths.append(str(path))
        except DataError:
            skipped.append(str(path))
    if skipped:
        warnings.warn(skipped_files(skipped, folder), stacklevel=2)
    if not images:
        raise DataError(f"no readable images in {folder}: put image files (PNG, JPEG, ...) there")
    return np.stack(images), paths


# ---------------------------------------------------------------- the python batches


class BatchUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, strings, bytes, numbers and numpy arrays: a pickle is a program, and
    one that names any other function (``os.system``) is refused before it runs. No library reads
    the official batches without unpickling them (torchvision's reader is ``pickle.load``)."""

    ARRAYS = {
        ("numpy.core.multiarray", "_reconstruct"),  # the official files, written by numpy 1 under Python 2
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2's name for it
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ARRAYS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # Python 3's protocol-2 spelling of a bytes object
            return latin1_bytes
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never does")


def latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"it encodes bytes as {encoding[:20]}, which a CIFAR batch never does")
    return text.encode("latin1")


def read_batch(path: Path) -> dict:
    """One python batch file as a dict with ``str`` keys, read by ``BatchUnpickler``."""
    if not path.is_file():
        raise DataError(f"{path} is missing: the python batches are incomplete; unpack or download them again")
    if path.stat().st_size > MAX_BATCH_FILE_BYTES:
        raise DataError(
            f"{path} is {path.stat().st_size >> 20} MB, more than any official batch file "
            f"({MAX_BATCH_FILE_BYTES >> 20} MB): it is not a CIFAR batch; download the data again"
        )
    try:
        with path.open("rb") as f:
            for count, _ in enumerate(pickletools.genops(f)):
                if count >= MAX_BATCH_OPCODES:
                    raise pickle.UnpicklingError(f"it has more than {MAX_BATCH_OPCODES:,} opcodes")
            f.seek(0)
            batch = BatchUnpickler(f, encoding="latin1").load()  # latin1: Python 2's str, as numpy expects
    except Exception as err:  # noqa: BLE001 - any failure of a hostile or truncated pickle ends in this one line
        raise DataError(f"{path} is not a CIFAR python batch ({str(err)[:120]}): download or unpack it again") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch's dict: download it again")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batch_arrays(path: Path, labels_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    data, labels = batch.get("data"), batch.get(labels_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE
        or not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(isinstance(v, int) and 0 <= v < classes for v in labels)
    ):
        raise DataError(
            f"{path} does not hold uint8 images of 3 x 32 x 32 with one {labels_key} label of 0 to {classes - 1} "
            "each: it is not a CIFAR batch; download it again"
        )
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)  # rows are planes R, G, B
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


def decode_python_batches(root: Path, layout: PythonBatches) -> Arrays:
    folder = root / layout.folder
    names = read_batch(folder / layout.meta).get(layout.names_key)
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise DataError(f"{folder / layout.meta} has no list of {layout.names_key}: download or unpack it again")
    parts = [_batch_arrays(folder / name, layout.labels_key, len(names)) for name in layout.train]
    test = _batch_arrays(folder / layout.test, layout.labels_key, len(names))
    train = np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])
    return Arrays(*train, *test, tuple(names))


def download(data_dir: Path, layout: PythonBatches) -> Path:
    """torchvision's download of the official python batches (checked against their md5); a clear error when offline."""
    import torchvision.datasets
    from torchvision.datasets.utils import download_and_extract_archive

    official = getattr(torchvision.datasets, layout.torchvision_class)
    try:
        download_and_extract_archive(official.url, str(data_dir), filename=official.filename, md5=official.tgz_md5)
    except Exception as err:  # noqa: BLE001 - URLError, socket errors, HTTP errors, checksum failures
        raise DataError(
            f"no {layout.title} in {data_dir} and the download failed ({type(err).__name__}: {err}); "
            "offline? pass --data.archive PATH (the python batches or an image folder as .tar.gz) "
            f"or put an image folder {{train,test}}/<class>/* in {data_dir}"
        ) from None
    return data_dir


# ---------------------------------------------------------------- the cache


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive_key(archive: Path, dataset: Dataset | None) -> str:
    """A cache key from the archive's bytes: the same copy anywhere hits, an edited one misses."""
    stat = archive.stat()
    return f"v{CACHE_FORMAT}:archive:{stat.st_size}:{archive_digest(archive.resolve(), stat.st_size, stat.st_mtime_ns)}:{dataset}"


@functools.lru_cache(maxsize=8)
def archive_digest(archive: Path, size: int, mtime_ns: int) -> str:
    """``file_digest``, once per process for an unchanged file: a run asks for its data's classes and cache several times."""
    return file_digest(archive)


def folder_key(folder: Path, parts: tuple[str, ...], dataset: Dataset | None) -> str:
    """A cache key from a manifest of every file in ``folder``'s ``parts`` (the splits, or the batches'
    folder): name, size and modification time. Editing, adding or removing any image changes it."""
    digest = hashlib.sha256()
    for part in parts:
        for path in sorted(p for p in (folder / part).rglob("*") if p.is_file()):
            relative = path.relative_to(folder)
            if not any(name.startswith(".") for name in relative.parts):
                stat = path.stat()
                digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"v{CACHE_FORMAT}:folder:{digest.hexdigest()}:{dataset}"


ARRAY_FIELDS = ("train_images", "train_labels", "test_images", "test_labels")


def read_cache(cache: Path, key: str | None = None) -> Arrays | None:
    """The cached arrays, or None when the cache is missing, from another source, or unreadable."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as npz:  # load each array once (npz[key] re-reads)
            if key is not None and str(npz["source"]) != key:
                return None
            val = (npz["val_images"], npz["val_labels"]) if "val_images" in npz.files else (None, None)
            arrays = Arrays(
                *(npz[name] for name in ARRAY_FIELDS),
                tuple(str(name) for name in npz["classes"]),
                *val,
                origin=str(npz["origin"]),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # corrupt or from an older format: rebuild rather than trust it
    if arrays.train_images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or len(arrays.train_images) != len(
        arrays.train_labels
    ):
        return None
    return arrays


def read_classes(cache: Path) -> tuple[str, ...]:
    """The class names of a cache ``prepare`` returned, without loading its images."""
    with np.load(cache, allow_pickle=False) as npz:
        return tuple(str(name) for name in npz["classes"])


def cache_of_classes(data_dir: Path, classes: list[str]) -> Arrays | None:
    """A cache in ``data_dir`` whose classes are ``classes`` (the data a checkpoint was trained on), or None."""
    for cache in sorted(data_dir.glob(f"*{CACHE_SUFFIX}")):
        try:
            if list(read_classes(cache)) == list(classes):
                return read_cache(cache)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue  # unreadable: not the one
    return None


def write_cache(cache: Path, arrays: Arrays, key: str) -> None:
    """Write to a private temporary file, then rename: readers never see half a cache."""
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".cache-", suffix=".npz")
    fields = {name: getattr(arrays, name) for name in ARRAY_FIELDS}
    if arrays.val_images is not None:
        fields.update(val_images=arrays.val_images, val_labels=arrays.val_labels)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                source=np.asarray(key),
                origin=np.asarray(arrays.origin),
                classes=np.asarray(arrays.classes),
                **fields,
            )
        os.replace(tmp, cache)
    except OSError as err:
        raise cannot_write(cache.parent, f"write the decoded cache {cache.name} into", err) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path``; a second process waits here until the first is done."""
    with open(lock_path, "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def prepare(data_dir: Path, archive: Path | None, download_ok: bool, dataset: Dataset | None = None) -> Path:
    """Make sure ``data_dir`` holds a valid decoded cache of the source; return its path.

    Runs started at once on one ``data_dir`` take turns: the first unpacks and decodes, the
    others wait and then find its cache (unpacking while another run reads would pull files
    from under it).
    """
    ensure_writable_folder(data_dir, "data", "pick another --data.data_dir")  # before any unpacking or decoding
    with _exclusive(data_dir / ".prepare.lock"):
        return _prepare(data_dir, archive, download_ok, dataset)


def remove_leftovers(data_dir: Path) -> list[Path]:
    """Delete what a killed run left half-made: unpacking folders and unfinished cache files.

    Called with the data folder's lock held, so no other run can be writing them now.
    """
    found = [*data_dir.glob(".extract-*"), *data_dir.glob(".cache-*.npz")]
    for path in found:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return found


def archive_stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return archive.stem


def _prepare(data_dir: Path, archive: Path | None, download_ok: bool, dataset: Dataset | None) -> Path:
    """Source precedence: (1) ``archive``, when given: exactly what it unpacks, whatever else
    ``data_dir`` holds; (2) without ``dataset``, an image folder in ``data_dir``; (3) the python
    batches of ``dataset`` (CIFAR-10 without one) in ``data_dir``; (4) torchvision's download of them,
    when allowed. Each source has its own cache, named after the archive, the folder or the dataset."""
    remove_leftovers(data_dir)
    if archive is not None:
        if not archive.is_file():
            raise DataError(f"archive {archive} does not exist: check --data.archive (or the Makefile's ARCHIVE)")
        cache, key = data_dir / f"{archive_stem(archive)}{CACHE_SUFFIX}", archive_key(archive, dataset)
        if read_cache(cache, key) is None:
            with unpacked(archive, data_dir) as root:
                arrays = decode_source(root, archive, dataset)
            write_cache(cache, dataclasses.replace(arrays, origin=str(archive.resolve())), key)
        return cache
    folder = find_image_folder(data_dir) if dataset is None else None
    if folder is not None:
        cache, key = data_dir / f"{folder.name}{CACHE_SUFFIX}", folder_key(folder, SPLITS, None)
        if read_cache(cache, key) is None:
            write_cache(cache, dataclasses.replace(decode_image_folder(folder), origin=str(folder.resolve())), key)
        return cache
    dataset = dataset or "cifar10"
    layout = PYTHON_LAYOUTS[dataset]
    root = find_python_batches(data_dir, layout)
    if root is None:
        if not download_ok:
            raise DataError(
                f"no {layout.title} in {data_dir} and downloading is off: pass --data.archive PATH, "
                f"put an image folder {{train,test}}/<class>/* in {data_dir}, or set --data.download true"
            )
        root = download(data_dir, layout)
    cache, key = data_dir / f"{dataset}{CACHE_SUFFIX}", folder_key(root, (layout.folder,), dataset)
    if read_cache(cache, key) is None:
        arrays = decode_python_batches(root, layout)
        write_cache(cache, dataclasses.replace(arrays, origin=str((root / layout.folder).resolve())), key)
    return cache


def decode_source(root: Path, archive: Path, dataset: Dataset | None) -> Arrays:
    """The data set in an unpacked archive, at its top level or one folder down: the python batches of
    ``dataset`` when one is named, else an image folder or either CIFAR's batches (CIFAR-100's fine labels)."""
    wanted = [dataset] if dataset else ["cifar10", "cifar100"]
    for name in wanted:
        batches = find_python_batches(root, PYTHON_LAYOUTS[name])
        if batches is not None:
            return decode_python_batches(batches, PYTHON_LAYOUTS[name])
    folder = find_image_folder(root) if dataset is None else None
    if folder is not None:
        return decode_image_folder(folder)
    if dataset:
        raise DataError(
            f"archive {archive} holds no {PYTHON_LAYOUTS[dataset].folder} at its top level or one folder down, "
            f"which --data.dataset {dataset} reads: pass that data set's archive, or drop --data.dataset to use what it holds"
        )
    raise DataError(
        f"archive {archive} holds neither an image folder ({{train,test}}/<class>/*) nor CIFAR's python batches, "
        "at its top level or one folder down: pass an archive of one of them"
    )
