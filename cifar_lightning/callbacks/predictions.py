"""``predictions.csv``: what ``predict`` decided for each image, gathered from every process by index."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from cifar_lightning.errors import UserError, ensure_writable_folder
from cifar_lightning.files import beside


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv``: path, a class and probability column per rank (quoted by the csv module) and the
    views averaged.

    Args:
        output: a new CSV file; default ``predictions.csv`` in the run's folder (``-2``, ``-3``... beside earlier ones).
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.path: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if getattr(stage, "value", stage) != "predict":
            return
        log_dir = Path(trainer.log_dir or ".")  # every rank: under DDP it is a broadcast
        if trainer.is_global_zero:  # before any image is predicted
            self.path = self.free_path(log_dir)
            ensure_writable_folder(self.path.parent, "predictions", "pass another --prediction_writer.output")

    def free_path(self, log_dir: Path) -> Path:
        """The file this predict writes: never one that holds an earlier predict's decisions."""
        if self.output is not None:
            if Path(self.output).exists():
                raise UserError(
                    f"{self.output} exists: pass another --prediction_writer.output, or move that file away"
                )
            return Path(self.output)
        return beside(log_dir / "predictions.csv")

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions, batch_indices) -> None:
        probabilities = torch.cat(predictions).float()
        indices = torch.tensor(
            [i for batch in _flat_batches(batch_indices) for i in batch], device=probabilities.device
        )
        if trainer.world_size > 1:  # every process predicted its own share: gather them by index
            probabilities = pl_module.all_gather(probabilities).flatten(0, 1)
            indices = pl_module.all_gather(indices).flatten()
        if not trainer.is_global_zero:
            return
        # DistributedSampler pads the shares to one length with repeats: keep each index once, in order
        order = {int(i): row for row, i in enumerate(indices.tolist())}
        rows = [order[i] for i in sorted(order)]
        probabilities = probabilities[rows].cpu()
        dataset = trainer.predict_dataloaders.dataset
        paths = [dataset.name(i) for i in sorted(order)]
        names = pl_module.hparams.class_names or [str(i) for i in range(probabilities.shape[1])]
        output = self.path
        top = probabilities.topk(min(3, probabilities.shape[1]), dim=1)
        views = getattr(pl_module, "views", 1)
        ranks = [""] + [f"_{rank}" for rank in range(2, top.indices.shape[1] + 1)]
        with output.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["path", *(f"{kind}{rank}" for rank in ranks for kind in ("class", "probability")), "views"]
            )
            for path, values, top_indices in zip(paths, top.values.tolist(), top.indices.tolist()):
                cells = [cell for i, v in zip(top_indices, values) for cell in (names[i], f"{v:.4f}")]
                writer.writerow([path, *cells, views])
        rank_zero_info(f"wrote {len(paths)} predictions to {output}")


def _flat_batches(batch_indices) -> list[list[int]]:
    """Lightning gives one list of batches per dataloader; this project predicts with one."""
    if batch_indices and batch_indices[0] and isinstance(batch_indices[0][0], (list, tuple)):
        return [batch for loader in batch_indices for batch in loader]
    return list(batch_indices)
