"""Give a checkpoint written before 2026-11-26 what ``cifar_lightning.load`` needs; weights unchanged.

    python scripts/upgrade_checkpoint.py RUN/last.ckpt --config RUN/config.yaml --archive ../shared/data/cifar10-jpeg.tar.gz

Older checkpoints left the network's class_path/init_args and the normalization out. This adds
them: the network and optimizer from the run's config.yaml, and the mean and std of the run's
own training split (its ``data.val_size`` and ``data.split_seed``), recomputed from the archive
it trained on. The file is rewritten atomically; git keeps the old one.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import yaml

from cifar_lightning.runs.checkpoints import read_checkpoint
from cifar_lightning.data import sources
from cifar_lightning.data.datamodule import channel_stats, split_indices

INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"  # what LightningCLI records, so load_from_checkpoint rebuilds


def upgrade(ckpt: Path, config: Path, archive: Path, data_dir: Path) -> dict:
    checkpoint = read_checkpoint(ckpt)
    settings = yaml.safe_load(config.read_text())
    model, data = settings["model"], settings["data"]
    sources.prepare(data_dir, archive, download_ok=False)
    arrays = sources.read_cache(data_dir / sources.CACHE_NAME)
    _, train_idx = split_indices(arrays.train_labels, data["val_size"], data["split_seed"])
    mean, std = channel_stats(arrays.train_images[train_idx])
    hparams = checkpoint.setdefault("hyper_parameters", {})
    for key in ("network", "optimizer", "distillation"):
        hparams[key] = model.get(key)
    for key in ("flip_tta", "tta_shift"):  # evaluation settings, no longer saved with the weights
        hparams.pop(key, None)
    hparams["_instantiator"] = INSTANTIATOR
    checkpoint["preprocessing"] = {"mean": list(mean), "std": list(std), "class_names": list(sources.CLASSES), "input_size": [32, 32]}
    partial = ckpt.with_name(f".{ckpt.name}.partial")
    torch.save(checkpoint, partial)
    os.replace(partial, ckpt)
    return checkpoint["preprocessing"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--config", type=Path, required=True, help="the run's config.yaml")
    parser.add_argument("--archive", type=Path, required=True, help="the data copy the run trained on")
    parser.add_argument("--data_dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    print(upgrade(args.checkpoint, args.config, args.archive, args.data_dir))


if __name__ == "__main__":
    main()
