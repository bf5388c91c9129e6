"""Grad-CAM overlays of a checkpoint's decisions, one PNG an image, and each prediction on the terminal."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_lightning.data.images import read_image, skipped_files
from cifar_lightning.errors import DataError, user_errors
from cifar_lightning.files import beside, write_atomically

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, and the images in the folders named (sorted), in the order given."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            found.append(path)  # read_image refuses anything but a regular file, and explain skips it
        else:
            raise DataError(f"{path} does not exist: pass image files or folders of images")
    if not found:
        raise DataError(
            f"no images in {', '.join(map(str, paths))}: pass image files ({', '.join(IMAGE_SUFFIXES)}) or folders of them"
        )
    return found


def output_names(files: list[Path]) -> list[str]:
    """``<stem>-cam.png`` for each file; two files with one stem get their position too."""
    stems = [f.stem for f in files]
    return [f"{stem}-cam.png" if stems.count(stem) == 1 else f"{stem}-{i}-cam.png" for i, stem in enumerate(stems)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning explain", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint this project wrote")
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument(
        "--out", type=Path, default=Path("explain"), help="the folder for the overlays (default explain/)"
    )
    parser.add_argument("--layer", help="the network's module to explain (default: its last convolution)")
    parser.add_argument(
        "--opacity", type=float, default=0.5, help="how strongly the map covers the image, 0 to 1 (default 0.5)"
    )
    parser.add_argument(
        "--scale", type=int, default=4, help="how many times larger the PNGs are than the network's input (default 4)"
    )
    parser.add_argument(
        "--trusted", action="append", default=None, help="a class the checkpoint may name besides the project's own"
    )
    args = parser.parse_args(argv)
    with user_errors(False, "cifar-lightning explain"):
        from cifar_lightning.explain import default_layer, overlay
        from cifar_lightning.inference.classifier import load

        if not 0.0 <= args.opacity <= 1.0 or args.scale < 1:
            raise DataError(
                f"--opacity must be between 0 and 1 and --scale at least 1 (got {args.opacity}, {args.scale})"
            )
        model = load(args.ckpt_path, trusted=args.trusted)
        files, images, skipped, why = [], [], [], ""
        # each read once; an unreadable or oversized one is skipped, as predict does
        for file in image_files(args.images):
            try:
                images.append(read_image(file))
                files.append(file)
            except DataError as err:
                skipped.append(str(file))
                why = why or str(err)  # the first reason, for when none is readable
        if skipped:
            warnings.warn(skipped_files(skipped, ", ".join(map(str, args.images))), stacklevel=1)
        if not images:
            raise DataError(f"no readable images in {', '.join(map(str, args.images))} ({why})")
        predictions = model.predict(images)
        try:  # the map of the class each prediction gives
            maps = model.activation_maps(images, layer=args.layer, classes=[answer.label for answer in predictions])
        except ValueError as err:  # a layer the network does not have
            raise DataError(str(err)) from None
        pixels = (model.to_tensor(images).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        overlays = overlay(pixels, maps, args.opacity)
        args.out.mkdir(parents=True, exist_ok=True)
        height, width = model.input_size
        size = (width * args.scale * 2, height * args.scale)
        for file, name, image, shown, answer in zip(files, output_names(files), pixels, overlays, predictions):
            pair = Image.fromarray(np.concatenate([image, shown], axis=1)).resize(size, Image.Resampling.NEAREST)
            target = write_atomically(beside(args.out / name), lambda tmp, pair=pair: pair.save(tmp, format="PNG"))
            print(f"{file}: {answer.label} ({answer.probability:.1%}, test-time views: {answer.tta}) -> {target}")
        print(f"layer: {args.layer or default_layer(model.network)}")


if __name__ == "__main__":
    main()
