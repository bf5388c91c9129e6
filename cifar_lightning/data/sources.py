"""Where the images come from (an image folder, CIFAR's python batches, an archive of either, or torchvision's
download), decoded to uint8 arrays cached one file per source and size. An archive is read as a stream, never
unpacked: nothing but the cache is written."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import pickletools
import tarfile
import time
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cifar_lightning.data.images import MAX_IMAGE_FILE_BYTES, decode_image
from cifar_lightning.errors import DISK_FULL, DataError, ensure_writable_folder, why_not_writable
from cifar_lightning.files import is_regular, open_regular, read_bytes, write_atomically

try:
    import fcntl  # POSIX file locks
except ImportError:  # Windows: concurrent runs on one cache are not guarded
    fcntl = None

IMAGE_SIZE = 32  # pixels, both sides: CIFAR's, and the default size every image is read at
MAX_IMAGE_SIZE = 128  # the largest side a small-image network here is for (STL-10 is 96)
# what an archive may hold, counted from its members' headers as they stream: the JPEG copy is 60,000
# files and about 200 MB; a gzip "bomb" of a few MB would otherwise take minutes to decompress
MAX_UNPACKED_BYTES = 4 << 30
MAX_MEMBERS = 300_000  # files and folders of an archive or an image folder (Tiny-ImageNet: 120,000)
MAX_CLASSES = 1_000  # CIFAR-100 has 100, Tiny-ImageNet 200; past this a list of names is data, not a config
# decoded pixels of one source: CIFAR-10 at 32 px is 184 MB, STL-10's 13,000 at 96 px 360 MB
MAX_DECODED_BYTES = 1 << 30
CACHE_SUFFIX = "-uint8.npz"  # <source>-<digest>-<size>px-uint8.npz in the cache folder: one per source and size
CACHE_FORMAT = 4  # bump when the cache's layout changes, so old caches are rebuilt
LOCK_WAIT_SECONDS = 900  # how long a run waits for another that decodes the same source (the JPEG copy: a minute)
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

    @property
    def files(self) -> tuple[str, ...]:
        return (self.meta, *self.train, self.test)


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
    train_images: np.ndarray  # uint8, N x S x S x 3
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
    if not is_regular(sidecar):
        return None
    words = read_bytes(sidecar, "checksum file", 1024).decode("ascii", errors="replace").split()
    expected = words[0].lower() if words else ""  # "<64 hex digits>  <name>"
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise DataError(
            f"checksum file {sidecar} does not start with a SHA-256 (64 hex digits): fetch it again with the archive, or delete it"
        )
    return expected


def member_parts(name: str) -> tuple[str, ...] | None:
    """A member's path as its parts, or None for one this project never reads: hidden, empty or ``..`` parts."""
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if not parts or any(part == ".." or part.startswith(".") for part in parts):
        return None
    return parts


class Collected:
    """A data set decoded from a stream of files: images under ``[root/]{train,val,test}/<class>/``, python batches
    under ``[root/]<layout folder>/``; a file is read only when its path says it is one."""

    def __init__(self, where: Path, layouts: list[str], images: bool, size: int) -> None:
        self.where, self.layouts, self.want_images, self.size = where, layouts, images, size
        self.images: dict[
            tuple[str, str], dict[str, list[tuple[str, np.ndarray]]]
        ] = {}  # (root, split) -> class -> files
        self.batches: dict[tuple[str, str], dict[str, bytes]] = {}  # (root, layout) -> file name -> bytes
        self.decoded_bytes = 0

    def kind(self, parts: tuple[str, ...]) -> tuple | None:
        if self.want_images and len(parts) in (3, 4) and parts[-3] in SPLITS:
            return ("image", "/".join(parts[:-3]), parts[-3], parts[-2], parts[-1])
        for name in self.layouts:
            layout = PYTHON_LAYOUTS[name]
            if len(parts) in (2, 3) and parts[-2] == layout.folder and parts[-1] in layout.files:
                return ("batch", "/".join(parts[:-2]), name, parts[-1])
        return None

    def add(self, kind: tuple, size: int, read, name: str) -> None:
        """``read()`` gives the file ``name``'s bytes; ``size`` was read from its header or ``stat``."""
        if kind[0] == "batch":
            _, root, layout, file = kind
            if size > MAX_BATCH_FILE_BYTES:
                raise DataError(
                    f"{name} is {size >> 20} MB, more than any official batch file "
                    f"({MAX_BATCH_FILE_BYTES >> 20} MB): it is not a CIFAR batch; fetch the data again"
                )
            self.batches.setdefault((root, layout), {})[file] = read()
            return
        _, root, split, label, file = kind
        if size > MAX_IMAGE_FILE_BYTES:
            raise DataError(f"image {name} is over {MAX_IMAGE_FILE_BYTES >> 20} MB: shrink it first")
        self.decoded_bytes += self.size * self.size * 3
        if self.decoded_bytes > MAX_DECODED_BYTES:
            raise DataError(
                f"{self.where} decodes to more than {MAX_DECODED_BYTES >> 30} GB of pixels at {self.size} px, far more "
                "than a small-image data set: pass the data you meant, or a smaller --data.image_size"
            )
        image = decode_image(read(), self.size, name)
        self.images.setdefault((root, split), {}).setdefault(label, []).append((file, image))

    def arrays(self, dataset: Dataset | None) -> Arrays | None:
        """The data set found: the batches of ``dataset`` (or of either CIFAR when none is named), else an image folder."""
        for name in self.layouts:
            roots = [root for (root, layout) in self.batches if layout == name]
            if roots:
                where = f"{self.where}:{roots[0]}".rstrip(":")
                return decode_python_batches(self.batches[(roots[0], name)].get, PYTHON_LAYOUTS[name], where, self.size)
        roots = sorted({root for root, _ in self.images})
        if len(roots) > 1:
            raise DataError(
                f"{self.where} holds several image folders ({', '.join(roots)}): keep one, or point at the one you mean"
            )
        if not roots:
            return None
        root = roots[0]
        names = {split: sorted(self.images.get((root, split), {})) for split in SPLITS if (root, split) in self.images}
        classes = check_classes(f"{self.where}/{root}".rstrip("/"), names)
        decoded = {}
        for split in names:
            images, labels = [], []
            for label, files in sorted(self.images[(root, split)].items()):
                files.sort(key=lambda item: item[0])  # by file name, as a folder lists them
                images += [image for _, image in files]
                labels += [classes.index(label)] * len(files)
            decoded[split] = (np.stack(images), np.asarray(labels, dtype=np.int64))
        return Arrays(*decoded["train"], *decoded["test"], classes, *decoded.get("val", (None, None)))


def decode_archive(archive: Path, dataset: Dataset | None, size: int) -> Arrays:
    """The data set in a ``.tar``/``.tar.gz`` archive, streamed: regular members decoded in memory, nothing written,
    no extraction (so no reliance on ``tarfile``'s filter). ``prepare`` has checked that it is a regular file."""
    expected = published_sha256(archive)
    if expected is not None and file_digest(archive) != expected:
        raise DataError(
            f"archive {archive} does not match its checksum in {archive.name}.sha256 "
            "(truncated or corrupt download?): fetch the archive again"
        )
    collected = Collected(archive, [dataset] if dataset else ["cifar10", "cifar100"], dataset is None, size)
    total = members = 0
    try:
        with open_regular(archive, "archive") as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:  # a stream
            for member in tar:
                total, members = total + member.size, members + 1
                if total > MAX_UNPACKED_BYTES or members > MAX_MEMBERS:
                    raise DataError(
                        f"archive {archive} holds more than {MAX_UNPACKED_BYTES >> 30} GB or {MAX_MEMBERS:,} files, "
                        "far more than a small-image data set: pass the archive you meant"
                    )
                parts = member_parts(member.name) if member.isreg() else None
                kind = collected.kind(parts) if parts else None
                if kind is not None:
                    read = lambda member=member: tar.extractfile(member).read()  # noqa: E731
                    collected.add(kind, member.size, read, f"{archive}:{member.name}")
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as err:
        # gzip's BadGzipFile is an OSError; lzma's errors are ValueErrors
        raise DataError(
            f"archive {archive} cannot be read ({err}): it is truncated or not a .tar.gz; fetch it again"
        ) from None
    arrays = collected.arrays(dataset)
    if arrays is not None:
        return arrays
    if dataset:
        raise DataError(
            f"archive {archive} holds no {PYTHON_LAYOUTS[dataset].folder} at its top level or one folder down, "
            f"which --data.dataset {dataset} reads: pass that data set's archive, or drop --data.dataset to use what it holds"
        )
    raise DataError(
        f"archive {archive} holds neither an image folder ({{train,test}}/<class>/*) nor CIFAR's python batches, "
        "at its top level or one folder down: pass an archive of one of them"
    )


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
        if is_regular(root / layout.folder / layout.meta):
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


def check_classes(root: str, names: dict[str, list[str]]) -> tuple[str, ...]:
    """The classes (``train/``'s folders, sorted by name) from each split's class folder names, or one line
    that says what is wrong with the folder."""
    for split in ("train", "test"):
        if split not in names:
            raise DataError(
                f"image folder {root} has no {split}/ folder: expected {root}/{{train,test}}/<class>/<image files>"
            )
    for split, found in names.items():
        by_case: dict[str, list[str]] = {}
        for name in found:
            by_case.setdefault(name.casefold(), []).append(name)
        clashes = [same for same in by_case.values() if len(same) > 1]
        if clashes:
            raise DataError(
                f"{root}/{split} has class folders whose names differ only in case ({', '.join(clashes[0])}): "
                "they would be one class on some file systems and two on others; rename or merge them"
            )
    classes = tuple(sorted(names["train"]))
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise DataError(
            f"{root}/train holds {len(classes)} class folder(s) ({', '.join(classes[:10]) or 'none'}); a classifier "
            f"here needs 2 to {MAX_CLASSES:,}: one folder of images per class, train/<class>/*"
        )
    for split, found in names.items():
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(
                f"{root}/{split} has class folders that train/ lacks ({', '.join(unknown[:10])}): the classes are "
                "train/'s folders; add their training images to train/, or remove them"
            )
    if "val" in names:
        unseen = [name for name in classes if name not in names["val"]]
        if unseen:
            raise DataError(
                f"{root}/val has no folder for class(es) {', '.join(unseen[:10])}, so they would get no "
                "validation image: add val/<class>/ images for each class, or remove val/ (then val_size images "
                "of train/ are held out)"
            )
    return classes


def list_folder(root: Path) -> dict[tuple[str, ...], Path]:
    """The regular, visible files of an image folder's splits (at most ``MAX_MEMBERS``), by their parts below ``root``."""
    files: dict[tuple[str, ...], Path] = {}
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        for folder in (root / split).iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            found = [path for path in folder.iterdir() if not path.name.startswith(".") and is_regular(path)]
            if not found:
                raise DataError(
                    f"class folder(s) {split}/{folder.name} in {root} hold no images: add images, or remove the folder"
                )
            files.update(((split, folder.name, path.name), path) for path in found)
            if len(files) > MAX_MEMBERS:
                raise DataError(f"{root} holds more than {MAX_MEMBERS:,} files, far more than a small-image data set")
    return files


def decode_image_folder(root: Path, size: int = IMAGE_SIZE) -> Arrays:
    """``{train,test}/<class>/*`` (and ``val/<class>/*`` when present), every image resized to ``size``."""
    files = list_folder(root)
    names: dict[str, set[str]] = {}
    for split, label, _ in files:
        names.setdefault(split, set()).add(label)
    check_classes(str(root), {split: sorted(found) for split, found in names.items()})
    collected = Collected(root, [], True, size)
    for parts, path in sorted(files.items()):
        read = lambda path=path: read_bytes(path, "image", MAX_IMAGE_FILE_BYTES)  # noqa: E731
        collected.add(("image", "", *parts), path.stat().st_size, read, str(path))
    return collected.arrays(None)


# ---------------------------------------------------------------- the python batches


class BatchUnpickler(pickle.Unpickler):
    """Builds only plain values and numpy arrays, shapes bounded first; any other name is refused before it runs. No
    library reads the batches without unpickling (torchvision's reader is ``pickle.load``)."""

    RECONSTRUCT = {
        ("numpy.core.multiarray", "_reconstruct"),  # the official files, written by numpy 1 under Python 2
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2's name for it
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.RECONSTRUCT:
            reconstruct = super().find_class(module, name)
            return lambda subtype, shape, dtype: reconstruct(np.ndarray, checked_shape(shape), dtype)
        if (module, name) == ("numpy", "ndarray"):
            return new_array
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):  # Python 3's protocol-2 spelling of a bytes object
            return latin1_bytes
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never does")


def checked_shape(shape) -> tuple[int, ...]:
    """An array's shape from a pickle, refused past ``MAX_BATCH_FILE_BYTES`` of 8-byte items before allocation."""
    shape = (shape,) if isinstance(shape, int) else shape
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"it builds an array of shape {str(shape)[:40]}")
    if 8 * float(np.prod(shape, dtype=np.float64)) > MAX_BATCH_FILE_BYTES:
        raise pickle.UnpicklingError(f"it builds an array of shape {shape}, larger than any CIFAR batch")
    return shape


def new_array(shape=(), *args) -> np.ndarray:
    """``numpy.ndarray`` called by a pickle (the subtype ``_reconstruct`` is given stands for it too)."""
    return np.ndarray(checked_shape(shape), *args)


def latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"it encodes bytes as {encoding[:20]}, which a CIFAR batch never does")
    return text.encode("latin1")


def read_batch(data: bytes, name: str) -> dict:
    """One python batch file's bytes as a dict with ``str`` keys, read by ``BatchUnpickler``."""
    try:
        for count, _ in enumerate(pickletools.genops(io.BytesIO(data))):
            if count >= MAX_BATCH_OPCODES:
                raise pickle.UnpicklingError(f"it has more than {MAX_BATCH_OPCODES:,} opcodes")
        batch = BatchUnpickler(io.BytesIO(data), encoding="latin1").load()  # latin1: Python 2's str, as numpy expects
    except Exception as err:  # noqa: BLE001 - any failure of a hostile or truncated pickle ends in this one line
        raise DataError(f"{name} is not a CIFAR python batch ({str(err)[:120]}): download or unpack it again") from None
    if not isinstance(batch, dict):
        raise DataError(f"{name} holds a {type(batch).__name__}, not a CIFAR batch's dict: download it again")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def batch_arrays(batch: dict, name: str, labels_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
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
            f"{name} does not hold uint8 images of 3 x 32 x 32 with one {labels_key} label of 0 to {classes - 1} "
            "each: it is not a CIFAR batch; download it again"
        )
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)  # rows are planes R, G, B
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


def decode_python_batches(read, layout: PythonBatches, where: str, size: int = IMAGE_SIZE) -> Arrays:
    """The batches ``read(file name)`` gives (bytes, or None when missing) as arrays, resized to ``size``."""

    def batch(file: str) -> tuple[dict, str]:
        data, name = read(file), f"{where}/{layout.folder}/{file}"
        if data is None:
            raise DataError(f"{name} is missing: the python batches are incomplete; fetch them again")
        return read_batch(data, name), name

    meta, meta_name = batch(layout.meta)
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASSES or not all(isinstance(n, str) for n in names):
        raise DataError(f"{meta_name} has no list of 2 to {MAX_CLASSES:,} {layout.names_key}: download it again")
    parts = [batch_arrays(*batch(file), layout.labels_key, len(names)) for file in (*layout.train, layout.test)]
    if size != IMAGE_SIZE:
        parts = [(np.stack([decode_image(image, size) for image in images]), labels) for images, labels in parts]
    train = np.concatenate([images for images, _ in parts[:-1]]), np.concatenate([labels for _, labels in parts[:-1]])
    return Arrays(*train, *parts[-1], tuple(names))


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
    with open_regular(path, "file") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_key(folder: Path, parts: tuple[str, ...]) -> str:
    """A manifest digest of every file in ``folder``'s ``parts`` (the splits, or the batches' folder): name,
    size and modification time. Editing, adding or removing any image changes it."""
    digest = hashlib.sha256()
    count = 0
    for part in parts:
        for path in sorted((folder / part).rglob("*")):
            relative = path.relative_to(folder)
            if not any(name.startswith(".") for name in relative.parts) and is_regular(path):
                stat = path.stat()
                digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
                count += 1
                if count > MAX_MEMBERS:
                    raise DataError(
                        f"{folder} holds more than {MAX_MEMBERS:,} files, far more than a small-image data set"
                    )
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cifar_lightning`` (``~/.cache/cifar_lightning``): outside any image folder, which is never written to."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cifar_lightning"


def cache_file(cache_dir: Path, label: str, source: Path, size: int) -> Path:
    """``<label>-<digest of the source's path>-<size>px-uint8.npz``: one per source and size, so two never mix."""
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
    return cache_dir / f"{label}-{digest}-{size}px{CACHE_SUFFIX}"


def array_header(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """An ``.npy`` member's shape and dtype from its header, read before its data, or None when it is missing
    or claims more than its uncompressed size holds."""
    try:
        info = zf.getinfo(f"{name}.npy")
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError):
        return None
    if dtype.hasobject or int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
        return None
    return shape, dtype


def cache_fits(cache: Path, size: int) -> bool:
    """Whether a cache's members are what this project writes, from the zip's sizes and array headers alone."""
    try:
        with zipfile.ZipFile(cache) as zf:
            if sum(info.file_size for info in zf.infolist()) > MAX_DECODED_BYTES * 9 // 8:  # labels, names: < 1/8
                return False
            headers = {
                name: array_header(zf, name) for name in ("source", "origin", "classes", *ARRAY_FIELDS, *VAL_FIELDS)
            }
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    classes = headers["classes"]
    if any(headers[name] is None for name in ("source", "origin", "classes", *ARRAY_FIELDS)) or (
        (headers["val_images"] is None) != (headers["val_labels"] is None)
    ):
        return False
    if classes[1].kind != "U" or len(classes[0]) != 1 or not 2 <= classes[0][0] <= MAX_CLASSES:
        return False
    for split in ("train", "test", "val"):
        if headers[f"{split}_images"] is None:
            continue
        (image_shape, image_type), (label_shape, label_type) = headers[f"{split}_images"], headers[f"{split}_labels"]
        if image_type != np.uint8 or label_type != np.int64 or image_shape[1:] != (size, size, 3):
            return False
        if len(image_shape) != 4 or label_shape != image_shape[:1] or image_shape[0] == 0:
            return False
    return True


ARRAY_FIELDS = ("train_images", "train_labels", "test_images", "test_labels")
VAL_FIELDS = ("val_images", "val_labels")


def read_cache(cache: Path, key: str | None = None, size: int = IMAGE_SIZE) -> Arrays | None:
    """The cached arrays, or None when the cache is missing, from another source, or does not fit what this
    project writes (its headers are checked before any array is read, its labels after)."""
    if not is_regular(cache) or not cache_fits(cache, size):
        return None
    try:
        with np.load(cache, allow_pickle=False) as npz:  # load each array once (npz[key] re-reads)
            if key is not None and str(npz["source"]) != key:
                return None
            val = tuple(npz[name] for name in VAL_FIELDS) if "val_images" in npz.files else (None, None)
            arrays = Arrays(
                *(npz[name] for name in ARRAY_FIELDS),
                tuple(str(name) for name in npz["classes"]),
                *val,
                origin=str(npz["origin"]),
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # corrupt: rebuild rather than trust it
    labels = [arrays.train_labels, arrays.test_labels] + ([arrays.val_labels] if arrays.val_labels is not None else [])
    if any(len(part) and (part.min() < 0 or part.max() >= len(arrays.classes)) for part in labels):
        return None
    return arrays


def read_classes(cache: Path) -> tuple[str, ...]:
    """The class names of a cache ``prepare`` returned, without loading its images."""
    with np.load(cache, allow_pickle=False) as npz:
        return tuple(str(name) for name in npz["classes"])


def cache_of_classes(cache_dir: Path, classes: list[str], size: int = IMAGE_SIZE) -> Arrays | None:
    """The largest cache in ``cache_dir`` of ``size`` px whose classes are ``classes`` (the data a checkpoint was
    trained on), or None."""
    found = [
        c
        for c in cache_dir.glob(f"*-{size}px{CACHE_SUFFIX}")
        if cache_fits(c, size) and read_classes(c) == tuple(classes)
    ]
    return read_cache(max(found, key=lambda c: c.stat().st_size), size=size) if found else None  # the largest


def write_cache(cache: Path, arrays: Arrays, key: str) -> None:
    """Written to a private temporary file, then renamed: readers never see half a cache."""
    fields = {name: getattr(arrays, name) for name in ARRAY_FIELDS}
    if arrays.val_images is not None:
        fields.update(val_images=arrays.val_images, val_labels=arrays.val_labels)
    extra = {"source": np.asarray(key), "origin": np.asarray(arrays.origin), "classes": np.asarray(arrays.classes)}

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, **extra, **fields)

    try:
        write_atomically(cache, save)
    except OSError as err:
        full = err.errno in DISK_FULL
        cause, fix = (err.strerror, "free disk space there") if full else (why_not_writable(err), "make it writable")
        raise DataError(
            f"cannot write the decoded cache {cache.name} into {cache.parent} ({cause}): {fix}, or pick another "
            "--data.cache_dir"
        ) from None


@contextmanager
def exclusive(cache: Path):
    """Hold ``<cache>.lock``: a second run on the same source waits here, at most ``LOCK_WAIT_SECONDS``, until
    the first has decoded it. A killed run's half-written cache (``.<cache>.*.partial``) is removed once held."""
    with open(cache.with_name(cache.name + ".lock"), "a") as f:
        waited = time.monotonic()
        while fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - waited > LOCK_WAIT_SECONDS:
                    raise DataError(
                        f"another run has been decoding into {cache} for {LOCK_WAIT_SECONDS // 60} minutes: let it "
                        "finish, or stop it"
                    ) from None
                time.sleep(0.2)
        try:
            for leftover in cache.parent.glob(f".{cache.name}.*.partial"):
                leftover.unlink(missing_ok=True)
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def archive_stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return archive.stem


def check_image_size(size) -> int:
    """``size`` when it is a side this project reads images at, else one line, before anything is allocated."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_IMAGE_SIZE:
        raise DataError(
            f"data.image_size is {str(size)[:20]}: give a side of 8 to {MAX_IMAGE_SIZE} pixels (this project's networks "
            "are for small images; 32 is CIFAR's, 64 Tiny-ImageNet's, 96 STL-10's)"
        )
    return size


def prepare(
    data_dir: Path,
    archive: Path | None,
    download_ok: bool,
    dataset: Dataset | None = None,
    *,
    size: int = IMAGE_SIZE,
    cache_dir: Path | None = None,
) -> Path:
    """The decoded cache's path, found or made, of the first source there is: ``archive``; an image folder in
    ``data_dir`` (without ``dataset``); ``dataset``'s python batches there; their download."""
    check_image_size(size)
    cache_dir = ensure_writable_folder(cache_dir or default_cache_dir(), "cache", "pick another --data.cache_dir")
    if archive is not None:
        if not is_regular(archive):
            raise DataError(
                f"archive {archive} does not exist or is not a file: check --data.archive (or the Makefile's ARCHIVE)"
            )
        stat = archive.stat()
        checksum = published_sha256(archive)  # a new checksum file is checked against the archive again
        key = f"v{CACHE_FORMAT}:archive:{stat.st_size}:{stat.st_mtime_ns}:{checksum}:{dataset}:{size}"
        cache = cache_file(cache_dir, archive_stem(archive), archive, size)
        decode = lambda: dataclasses.replace(decode_archive(archive, dataset, size), origin=str(archive.resolve()))  # noqa: E731
        return cached(cache, key, size, decode)
    folder = find_image_folder(data_dir) if dataset is None else None
    if folder is not None:
        key = f"v{CACHE_FORMAT}:folder:{folder_key(folder, SPLITS)}:{size}"
        decode = lambda: dataclasses.replace(decode_image_folder(folder, size), origin=str(folder.resolve()))  # noqa: E731
        return cached(cache_file(cache_dir, folder.name, folder, size), key, size, decode)
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
    folder = root / layout.folder
    key = f"v{CACHE_FORMAT}:batches:{folder_key(root, (layout.folder,))}:{dataset}:{size}"

    def decode() -> Arrays:
        def read(file: str) -> bytes | None:
            path = folder / file
            return read_bytes(path, "batch file", MAX_BATCH_FILE_BYTES) if is_regular(path) else None

        return dataclasses.replace(decode_python_batches(read, layout, str(root), size), origin=str(folder.resolve()))

    return cached(cache_file(cache_dir, dataset, folder, size), key, size, decode)


def cached(cache: Path, key: str, size: int, decode) -> Path:
    """``cache``, decoded again (``decode()``) unless it holds ``key`` and fits; runs on one source take turns."""
    if read_cache(cache, key, size) is not None:
        return cache
    with exclusive(cache):
        if read_cache(cache, key, size) is None:  # another run may have made it while this one waited
            write_cache(cache, decode(), key)
    return cache
