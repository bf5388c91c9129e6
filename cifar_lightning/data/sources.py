"""Where CIFAR-10 comes from: an archive, an image folder, or torchvision's download.

Every source ends as the same four uint8 arrays (train/test images as N x 32 x 32 x 3,
labels as N), cached in ``data_dir`` so a second run starts in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar_lightning.errors import DISK_FULL, DataError, ensure_writable_folder, why_not_writable

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows: concurrent runs on one data_dir are not guarded
    fcntl = None

# CIFAR-10's label order (batches.meta); image folders are mapped onto it by name.
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SIZE = 32  # pixels, both sides; other sizes are resized on decode
# width x height an image file may have, read from its header before any pixel is decoded: 40
# megapixels decode to 120 MB of RGB, and a 20,000 x 20,000 PNG of zeros is under 400 KB on disk
MAX_IMAGE_PIXELS = 40_000_000
# what an archive may unpack to, counted from its members' headers as they stream: the JPEG copy is
# 60,000 files and about 200 MB, and a gzip "bomb" of a few MB could otherwise fill the disk
MAX_UNPACKED_BYTES = 4 << 30
MAX_MEMBERS = 1_000_000
CACHE_NAME = "cifar10-uint8.npz"
CACHE_FORMAT = 2  # bump when the cache's layout changes, so old caches are rebuilt
PYTHON_BATCHES = "cifar-10-batches-py"  # folder name of the official python pickles


@dataclass(frozen=True)
class Arrays:
    train_images: np.ndarray  # uint8, N x 32 x 32 x 3
    train_labels: np.ndarray  # int64, N
    test_images: np.ndarray
    test_labels: np.ndarray
    origin: str = ""  # the folder the images were decoded from


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


def find_python_batches(data_dir: Path) -> Path | None:
    for root in _candidates(data_dir):
        if (root / PYTHON_BATCHES / "data_batch_1").is_file():
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


# ---------------------------------------------------------------- decoding


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    if not split_dir.is_dir():
        raise DataError(
            f"image folder {split_dir.parent} has no {split_dir.name}/ folder: "
            f"expected {split_dir.parent}/{{train,test}}/<class>/<image files>"
        )
    found = {p.name: p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    missing = [c for c in CLASSES if c not in found]
    extra = sorted(set(found) - set(CLASSES))
    if missing or extra:
        detail = "; ".join(
            part
            for part in (
                f"missing class folders: {', '.join(missing)}" if missing else "",
                f"unknown folders: {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise DataError(
            f"{split_dir} does not have CIFAR-10's ten class folders ({detail}): "
            f"expected one folder per class named {', '.join(CLASSES)}"
        )
    return {c: found[c] for c in CLASSES}


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


def _decode_split(split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, class_dir in enumerate(_class_dirs(split_dir).values()):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        images += [decode_image(p) for p in files]
        labels += [label] * len(files)
    if not images:
        raise DataError(f"{split_dir} has class folders but no images in them")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def decode_image_folder(root: Path) -> Arrays:
    train = _decode_split(root / "train")
    test = _decode_split(root / "test")
    return Arrays(*train, *test)


def decode_python_batches(root: Path) -> Arrays:
    from torchvision.datasets import CIFAR10

    try:
        train, test = (CIFAR10(str(root), train=t, download=False) for t in (True, False))
    except RuntimeError as err:  # torchvision's md5 check failed
        raise DataError(
            f"{root / PYTHON_BATCHES} is incomplete or corrupt ({err}): delete it and unpack again"
        ) from None
    return Arrays(
        np.asarray(train.data, dtype=np.uint8),
        np.asarray(train.targets, dtype=np.int64),
        np.asarray(test.data, dtype=np.uint8),
        np.asarray(test.targets, dtype=np.int64),
    )


def download(data_dir: Path) -> Path:
    """torchvision's download of the official python version; a clear error when offline."""
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(data_dir), train=True, download=True)
    except Exception as err:  # URLError, socket errors, HTTP errors, checksum failures
        raise DataError(
            f"no CIFAR-10 in {data_dir} and the download failed ({type(err).__name__}: {err}); "
            "offline? pass --data.archive PATH (a cifar-10-python or image-folder .tar.gz) "
            f"or put an image folder {{train,test}}/<class>/*.jpg in {data_dir}"
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


def archive_key(archive: Path) -> str:
    """A cache key from the archive's bytes: the same copy anywhere hits, an edited one misses."""
    return f"v{CACHE_FORMAT}:archive:{archive.stat().st_size}:{file_digest(archive)}"


def folder_key(folder: Path) -> str:
    """A cache key from a manifest of every file under ``folder``: name, size and modification time.

    Editing, adding or removing any image changes it; writing the cache beside the source does not
    (the cache and hidden files are not part of the source).
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.name == CACHE_NAME:
            continue
        stat = path.stat()
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"v{CACHE_FORMAT}:folder:{digest.hexdigest()}"


def read_cache(cache: Path, key: str | None = None) -> Arrays | None:
    """The cached arrays, or None when the cache is missing, from another source, or unreadable."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as npz:  # load each array once (npz[key] re-reads)
            if key is not None and str(npz["source"]) != key:
                return None
            arrays = Arrays(
                *(npz[name] for name in ("train_images", "train_labels", "test_images", "test_labels")),
                origin=str(npz["origin"]) if "origin" in npz.files else "",
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # corrupt or from an older format: rebuild rather than trust it
    if arrays.train_images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3) or len(arrays.train_images) != len(
        arrays.train_labels
    ):
        return None
    return arrays


def write_cache(cache: Path, arrays: Arrays, key: str) -> None:
    """Write to a private temporary file, then rename: readers never see half a cache."""
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".cache-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            fields = {k: v for k, v in arrays.__dict__.items() if k != "origin"}
            np.savez(f, source=np.asarray(key), origin=np.asarray(arrays.origin), **fields)
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


def prepare(data_dir: Path, archive: Path | None, download_ok: bool) -> Path:
    """Make sure ``data_dir`` holds a valid decoded cache; return its path.

    Runs started at once on one ``data_dir`` take turns: the first unpacks and decodes, the
    others wait and then find its cache (unpacking while another run reads would pull files
    from under it).
    """
    ensure_writable_folder(data_dir, "data", "pick another --data.data_dir")  # before any unpacking or decoding
    with _exclusive(data_dir / ".prepare.lock"):
        return _prepare(data_dir, archive, download_ok)


def remove_leftovers(data_dir: Path) -> list[Path]:
    """Delete what a killed run left half-made: unpacking folders and unfinished cache files.

    Called with the data folder's lock held, so no other run can be writing them now.
    """
    found = [*data_dir.glob(".extract-*"), *data_dir.glob(".cache-*.npz")]
    for path in found:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return found


def _prepare(data_dir: Path, archive: Path | None, download_ok: bool) -> Path:
    """Source precedence: (1) ``archive``, when given: exactly what it unpacks, whatever else
    ``data_dir`` holds; (2) an image folder in ``data_dir``; (3) the python batches in
    ``data_dir``; (4) torchvision's download, when allowed."""
    remove_leftovers(data_dir)
    cache = data_dir / CACHE_NAME
    if archive is not None:
        if not archive.is_file():
            raise DataError(f"archive {archive} does not exist: check --data.archive (or the Makefile's ARCHIVE)")
        key = archive_key(archive)
        if read_cache(cache, key) is not None:
            return cache
        with unpacked(archive, data_dir) as root:
            source, batches = source_in(root, archive)
            arrays = decode_python_batches(source) if batches else decode_image_folder(source)
        write_cache(cache, dataclasses.replace(arrays, origin=str(archive.resolve())), key)
        return cache
    else:
        folder = find_image_folder(data_dir)
        source, batches = (folder, False) if folder is not None else (find_python_batches(data_dir), True)
        if source is None:
            if not download_ok:
                raise DataError(
                    f"no CIFAR-10 in {data_dir} and downloading is off: pass --data.archive PATH, "
                    f"put an image folder {{train,test}}/<class>/* in {data_dir}, or set --data.download true"
                )
            source, batches = download(data_dir), True
        key = folder_key(source / PYTHON_BATCHES if batches else source)
        if read_cache(cache, key) is not None:
            return cache
    arrays = decode_python_batches(source) if batches else decode_image_folder(source)
    write_cache(cache, dataclasses.replace(arrays, origin=str(source.resolve())), key)
    return cache


def source_in(root: Path, archive: Path) -> tuple[Path, bool]:
    """The data set in an unpacked archive, at its top level or one folder down, and whether it is
    the python batches."""
    batches = find_python_batches(root)  # cifar-10-python.tar.gz
    if batches is not None:
        return batches, True
    folder = find_image_folder(root)
    if folder is not None:
        return folder, False
    raise DataError(
        f"archive {archive} holds neither an image folder ({{train,test}}/<class>/*) nor {PYTHON_BATCHES}, "
        "at its top level or one folder down: pass a CIFAR-10 archive"
    )
