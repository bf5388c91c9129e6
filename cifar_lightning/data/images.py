"""The one image reader: training folders and archives, ``predict``, ``explain``, the demo and ``load().predict``
all turn a file, its bytes, a PIL image or an array into RGB uint8 pixels here, the same way."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cifar_lightning.errors import DataError, UserError
from cifar_lightning.files import is_regular, read_bytes

# width x height an image may have, read from its header before any pixel is decoded: 40 megapixels
# decode to 120 MB of RGB, and a 20,000 x 20,000 PNG of zeros is under 400 KB on disk
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # PIL's decompression-bomb bound, read from the header at open
# bytes of one image file read into memory: a 40-megapixel PNG is at most about 120 MB
MAX_IMAGE_FILE_BYTES = 128 << 20


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB, scaled by its range: ``convert("RGB")`` clips 16-bit and float pixels
    (a 16-bit PNG turns white, a float TIFF in [0, 1] black), so those go through numpy first."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = Image.fromarray(to_uint8(np.asarray(image)), "L")
    return image if image.mode == "RGB" else image.convert("RGB")


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint8 of an 8-bit, 16-bit or float array: 16-bit by its range (65535 -> 255), floats in [0, 1] by 255
    (floats past 1 are taken as 0-255)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * 255
    values = pixels.astype(np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if np.issubdtype(pixels.dtype, np.floating):
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
    else:  # integers: 16-bit range when any value is past 8 bits
        scale = 255.0 / 65535.0 if values.size and values.max() > 255 else 1.0
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)


def from_array(pixels: np.ndarray) -> Image.Image:
    """An H x W (grayscale) or H x W x 1/3/4 array of uint8, 16-bit, float or bool as an RGB image."""
    if pixels.ndim == 3 and pixels.shape[2] in (1, 3, 4):
        pixels = pixels[..., :3] if pixels.shape[2] != 1 else pixels[..., 0]
    if pixels.ndim not in (2, 3) or not (np.issubdtype(pixels.dtype, np.number) or pixels.dtype == np.bool_):
        raise DataError(
            f"an array image must be H x W (grayscale) or H x W x 1, 3 or 4 channels of numbers, got {pixels.dtype} "
            f"{pixels.shape}"
        )
    if pixels.shape[0] * pixels.shape[1] > MAX_IMAGE_PIXELS:
        raise DataError(
            f"an array image of {pixels.shape[1]} x {pixels.shape[0]} pixels is more than this project reads"
        )
    return Image.fromarray(np.ascontiguousarray(to_uint8(pixels))).convert("RGB")


def read_image(source: str | Path | bytes | Image.Image | np.ndarray, name: str | None = None) -> Image.Image:
    """A file (path or bytes), PIL image or array as RGB, EXIF orientation applied; the pixel count is bounded from
    the header before decoding, and any decoder failure is one ``DataError``."""
    if isinstance(source, np.ndarray):
        return from_array(source)
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    name = name or str(source)
    try:
        data = source if isinstance(source, bytes) else read_bytes(Path(source), "image", MAX_IMAGE_FILE_BYTES)
    except UserError as err:
        raise DataError(str(err)) from None
    try:
        with warnings.catch_warnings():
            # PIL's own bound, checked from the header at open: past MAX_IMAGE_PIXELS it warns, which is a refusal here
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(
            f"image {name} is more than the {MAX_IMAGE_PIXELS // 10**6} megapixels this project decodes: shrink it first"
        ) from None
    except Exception as err:  # noqa: BLE001 - decoders raise more than OSError on corrupt files (QOI: IndexError)
        raise DataError(
            f"cannot read image {name} ({type(err).__name__}: {str(err)[:120]}): delete or replace the file"
        ) from None


def decode_image(
    source: str | Path | bytes | Image.Image | np.ndarray, size: int, name: str | None = None
) -> np.ndarray:
    """``read_image`` resized to ``size`` x ``size``: an H x W x 3 uint8 array."""
    image = read_image(source, name)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def skipped_files(paths: list[str], where: Path | str) -> str:
    """The warning for files that could not be read (or were too large to decode), naming at most ten."""
    named = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
    return f"skipped {len(paths)} unreadable or oversized file(s) in {where}: {named}"


def decode_folder(folder: Path, size: int, limit: int) -> tuple[np.ndarray, list[str]]:
    """Every readable image under ``folder`` (at most ``limit`` files), resized to ``size``, and their paths; the
    rest are skipped with a warning."""
    if not folder.is_dir():
        raise DataError(f"predict folder {folder} does not exist: check --data.predict_dir")
    files = []
    for path in folder.rglob("*"):
        if not path.name.startswith("."):
            files.append(path)
            if len(files) > limit:
                raise DataError(f"{folder} holds more than {limit:,} files: point at a folder of the images you mean")
    images, paths, skipped = [], [], []
    for path in sorted(files):
        if path.is_dir():
            continue
        try:
            if not is_regular(path):
                raise DataError(f"{path} is not a regular file")
            images.append(decode_image(path, size))
            paths.append(str(path))
        except DataError:
            skipped.append(str(path))
    if skipped:
        warnings.warn(skipped_files(skipped, folder), stacklevel=2)
    if not images:
        raise DataError(f"no readable images in {folder}: put image files (PNG, JPEG, ...) there")
    return np.stack(images), paths
