"""Ship a trained network: a ``torch.export`` program and an ONNX file of a checkpoint.

``model.pt2``, ``model.onnx`` and ``model.json`` (classes, input, views), all or none; ``--overwrite`` replaces
only an earlier export. The models take N x 3 x S x S RGB in [0, 1], normalization built in, and give N x classes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from cifar_lightning.errors import UserError, user_errors
from cifar_lightning.files import check_replaceable, read_yaml
from cifar_lightning.inference.classifier import TrainedClassifier, load
from cifar_lightning.training.trust import check_same_network, config_classes, qualified_name, spec_name

FILES = {"program": "model.pt2", "onnx": "model.onnx", "info": "model.json"}


def load_for_export(config: str | None, ckpt_path: str) -> tuple[TrainedClassifier, list[str]]:
    """The checkpoint's trained model (``load``: read once, as data). A config is code, so the classes it names are
    trusted, and the checkpoint must hold its network."""
    settings = read_yaml(Path(config)) if config else {}
    model = settings.get("model") if isinstance(settings, dict) else None
    model = model if isinstance(model, dict) else {}
    classifier = load(ckpt_path, trusted=config_classes(model))
    check_same_network(qualified_name(type(classifier.network)), spec_name(model.get("network")))
    return classifier, classifier.class_names


def export(model: TrainedClassifier, classes: list[str], out: Path, overwrite: bool = False) -> dict[str, Path]:
    """The three files into a new folder beside ``out``, renamed into place when all are written: ``out`` never
    holds one checkpoint's program beside another's ONNX. An existing ``out`` is kept unless ``overwrite``,
    and even then replaced only when it is an earlier export (``check_replaceable``)."""
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise UserError(f"{out} already exists (an earlier export?): pass --overwrite to replace it, or another --out")
    check_replaceable(out, "export", set(FILES.values()))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        paths = write_files(model, classes, staging)
        (staging / ".export").write_text("written by cifar-lightning export; --overwrite replaces only such a folder\n")
        if out.exists():  # --overwrite: the old folder is moved aside first, then removed
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {kind: out / path.name for kind, path in paths.items()}


def write_files(model: TrainedClassifier, classes: list[str], out: Path) -> dict[str, Path]:
    shape = (3, *model.input_size)
    example = torch.rand(2, *shape)
    paths = {kind: out / name for kind, name in FILES.items()}
    batch = torch.export.Dim("batch", min=1, max=65536)
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, paths["program"])
        onnx = torch.onnx.export(program, input_names=["images"], output_names=["logits"], dynamo=True, verbose=False)
        onnx.save(str(paths["onnx"]))
    paths["info"].write_text(
        json.dumps(
            {
                "input": {
                    "name": "images",
                    "shape": ["N", *shape],
                    "dtype": "float32",
                    "range": [0, 1],
                    "channels": "RGB",
                },
                "output": {"name": "logits", "shape": ["N", len(classes)], "test_time_views": model.tta},
                "classes": classes,
            },
            indent=2,
        )
        + "\n"
    )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        help="the run's config.yaml: the classes it names are trusted, and the checkpoint must hold its network",
    )
    parser.add_argument("--ckpt_path", required=True, help="the checkpoint to export")
    parser.add_argument("--out", help="output folder (default: <run>/export/<checkpoint name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in that folder")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    checkpoint = Path(args.ckpt_path).resolve()
    out = Path(args.out) if args.out else checkpoint.parent.parent / "export" / checkpoint.stem
    with user_errors(args.verbose, "cifar-lightning export"):
        model, classes = load_for_export(args.config, args.ckpt_path)
        paths = export(model, classes, out, args.overwrite)
    for kind, path in paths.items():
        print(f"{kind:>12}: {path}")


if __name__ == "__main__":
    main()
