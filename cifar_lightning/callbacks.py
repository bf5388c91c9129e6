"""Callbacks: behaviour that cuts across model and data."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import lightning
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning.errors import UserError

RUN_INFO = "run.json"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _data_copy(datamodule) -> dict:
    archive = getattr(datamodule, "archive", None)
    info = {"data_dir": str(getattr(datamodule, "data_dir", "")), "archive": str(archive) if archive else None}
    if archive is not None:
        sidecar = Path(archive).with_name(Path(archive).name + ".sha256")
        if sidecar.is_file():
            info["archive_sha256"] = sidecar.read_text().split()[0]
    return info


def last_checkpoint_path(trainer: Trainer) -> str:
    """The newest every-epoch checkpoint (the unmonitored ModelCheckpoint's file), or ""."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", "") is None and callback.best_model_path:
            return callback.best_model_path
    return ""


class RunInfo(Callback):
    """Writes ``run.json`` beside the run's logs: command, commit, versions, data copy, machine.

    Results are only as good as their provenance; the report reads this file.
    """

    @rank_zero_only
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.log_dir is None:
            return
        path = Path(trainer.log_dir) / RUN_INFO
        previous = json.loads(path.read_text()) if path.is_file() else {}
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        start = {
            "started": time.time(),  # seconds since the epoch; the report's clock starts here
            "command": " ".join(["python -m cifar_lightning", *sys.argv[1:]]),
            "commit": _git("rev-parse", "HEAD"),
            "commit_dirty": bool(dirty) if dirty is not None else None,
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "data": _data_copy(trainer.datamodule),
            "machine": {
                "cpu": _cpu_model(),
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "accelerator": type(trainer.accelerator).__name__,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                "precision": str(trainer.precision),
                "platform": platform.platform(),
            },
            "parameters": sum(p.numel() for p in pl_module.parameters()),
        }
        # a resumed run appends its own start, so the record shows every command that wrote the run
        starts = previous.get("starts", []) + [start]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**start, "starts": starts}, indent=2) + "\n")


class NonFiniteLossError(UserError):
    """Training diverged."""


class FiniteLossGuard(Callback):
    """Stops training at the first step whose loss is NaN or infinite.

    Lightning has no per-step check (``detect_anomaly`` is slow; ``EarlyStopping(check_finite)``
    looks only at its monitored metric once per epoch). Stopping by an exception means no
    checkpoint is written from the diverged weights: ``last.ckpt`` stays the last good epoch.
    """

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            last = last_checkpoint_path(trainer) or "none yet"
            raise NonFiniteLossError(
                f"the training loss became {loss.item()} at epoch {trainer.current_epoch}, step {trainer.global_step}: "
                "lower the peak learning rate (--model.optimizer.init_args.lr) or clip gradients "
                f"(--trainer.gradient_clip_val 1.0); last good checkpoint: {last}"
            )


class FitSummary(Callback):
    """Ends ``fit`` with what a person wants to know next: how good, how long, where it is."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_score", None)
        minutes = (time.perf_counter() - self.started) / 60
        lines = [f"fit finished: {trainer.current_epoch} epochs, {trainer.global_step} steps, {minutes:.1f} min"]
        if best is not None:
            lines.append(f"  best {checkpoint.monitor} = {float(best):.4f}: {checkpoint.best_model_path}")
        if last_checkpoint_path(trainer):
            lines.append(f"  last checkpoint: {last_checkpoint_path(trainer)}")
        if trainer.log_dir:
            lines.append(f"  test it:  python -m cifar_lightning test --config {trainer.log_dir}/config.yaml --ckpt_path <checkpoint>")
            lines.append(f"  report:   python -m cifar_lightning.report {trainer.log_dir}")
            lines.append(f"  curves:   tensorboard --logdir {Path(trainer.log_dir).parent}")
        rank_zero_info("\n".join(lines))


class ResumeHint(Callback):
    """On Ctrl-C or SIGTERM, say how to pick the run up again.

    Lightning stops at the next batch boundary and keeps the checkpoints written so far;
    the last one (end of the previous epoch) is where ``--ckpt_path last`` resumes.
    """

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.log_dir is None:
            return
        last = last_checkpoint_path(trainer)
        where = f"from {last}" if last else "(no checkpoint yet: the first epoch had not finished)"
        rank_zero_info(
            f"stopped at epoch {trainer.current_epoch}, step {trainer.global_step}; resume {where} with: "
            f"python -m cifar_lightning fit --config {trainer.log_dir}/config.yaml --ckpt_path last"
        )


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv``: path, top-1 class and its probability, and the top 3.

    Args:
        output: the CSV file; defaults to ``predictions.csv`` in the run's log folder.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions, batch_indices) -> None:
        if not trainer.is_global_zero:
            return
        probabilities = torch.cat(predictions).float()
        paths = trainer.datamodule.predict_paths
        names = pl_module.hparams.class_names or [str(i) for i in range(probabilities.shape[1])]
        output = Path(self.output or Path(trainer.log_dir or ".") / "predictions.csv")
        output.parent.mkdir(parents=True, exist_ok=True)
        top = probabilities.topk(min(3, probabilities.shape[1]), dim=1)
        with output.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "class", "probability", "top3"])
            for path, values, indices in zip(paths, top.values.tolist(), top.indices.tolist()):
                top3 = " ".join(f"{names[i]}:{v:.4f}" for i, v in zip(indices, values))
                writer.writerow([path, names[indices[0]], f"{values[0]:.4f}", top3])
        rank_zero_info(f"wrote {len(paths)} predictions to {output}")
