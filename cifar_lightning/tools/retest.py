"""Single-view test accuracy of a run's checkpoint, written beside the run: the figure every TTA number is read against.

    cifar-lightning retest results/fast [--checkpoint last.ckpt] [--archive PATH] [--data_dir data]

Loads the checkpoint with ``cifar_lightning.load`` (its own normalization, weights_only) and
classifies the official test split one view per image, in float32. Writes ``retest.json`` into
the run folder: the accuracy, the checkpoint, the data copy, the commit and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from cifar_lightning.data import sources
from cifar_lightning.errors import user_errors
from cifar_lightning.inference.classifier import load
from cifar_lightning.runs import provenance

RETEST = "retest.json"


def single_view_accuracy(checkpoint: Path, arrays: sources.Arrays, batch: int = 1000) -> float:
    model = load(checkpoint)
    images = torch.from_numpy(arrays.test_images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        predicted = torch.cat([model(images[i : i + batch]).argmax(1) for i in range(0, len(images), batch)])
    return float((predicted.numpy() == arrays.test_labels).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning retest", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", default="last.ckpt", help="file name in the run folder, or in its checkpoints/")
    parser.add_argument("--archive", type=Path, default=Path("../shared/data/cifar10-jpeg.tar.gz"))
    parser.add_argument("--data_dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    with user_errors(False, "cifar-lightning retest"):
        checkpoint = next(
            (
                p
                for p in (args.run_dir / args.checkpoint, args.run_dir / "checkpoints" / args.checkpoint)
                if p.is_file()
            ),
            args.run_dir / args.checkpoint,
        )
        arrays = sources.read_cache(sources.prepare(args.data_dir, args.archive, download_ok=False))
        accuracy = single_view_accuracy(checkpoint, arrays)
    record = {
        "test_acc_single_view": accuracy,
        "test_images": int(len(arrays.test_labels)),
        "checkpoint": str(checkpoint),
        "command": " ".join(["cifar-lightning retest", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "data": {"archive": str(args.archive), "origin": arrays.origin},
        **provenance.commit(),
        "machine": provenance.machine(),
        "torch": torch.__version__,
    }
    (args.run_dir / RETEST).write_text(json.dumps(record, indent=2) + "\n")
    print(f"single-view test accuracy {accuracy:.2%} ({checkpoint}) -> {args.run_dir / RETEST}")


if __name__ == "__main__":
    main()
