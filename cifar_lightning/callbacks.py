"""Callbacks: behaviour that cuts across model and data."""

from __future__ import annotations

import csv
import json
import random
import re
import sys
import time
from pathlib import Path

import lightning
import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ThroughputMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from cifar_lightning import provenance
from cifar_lightning.errors import UserError
from cifar_lightning.reference_rate import train_step_rate
from cifar_lightning.figures import misclassified_figure

RUN_INFO = "run.json"
HELD_OUT = "validation_images.txt"  # train/<class>/<NNNN>, one a line


def last_checkpoint_path(trainer: Trainer) -> str:
    """The newest every-epoch checkpoint (the unmonitored ModelCheckpoint's file), or ""."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", "") is None and callback.best_model_path:
            return callback.best_model_path
    return ""


class RunInfo(Callback):
    """Writes ``run.json`` beside the run's logs: command, commit, versions, data copy, machine, and
    a reference rate of this machine measured now (``reference_rate.py``).

    Results are only as good as their provenance; the report reads this file.

    Args:
        reference_seconds: how long to time the reference work when the fit starts; 0 skips it.
    """

    def __init__(self, reference_seconds: float = 3.0) -> None:
        self.reference_seconds = reference_seconds

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        log_dir = trainer.log_dir  # every rank: under DDP it is a broadcast from rank 0
        if log_dir is None or not trainer.is_global_zero:
            return
        path = Path(log_dir) / RUN_INFO
        previous = json.loads(path.read_text()) if path.is_file() else {}
        start = {
            "started": time.time(),  # seconds since the epoch; the report's clock starts here
            "command": " ".join(["python -m cifar_lightning", *sys.argv[1:]]),
            **provenance.commit(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "data": provenance.data_copy(trainer.datamodule),
            "machine": {
                **provenance.machine(),
                "accelerator": type(trainer.accelerator).__name__,
                "precision": str(trainer.precision),
            },
            "parameters": sum(p.numel() for p in pl_module.parameters()),
            "data_preparation_s": getattr(trainer.datamodule, "preparation_seconds", None),
            "reference": {
                "images_per_s": train_step_rate(
                    pl_module.network, trainer.datamodule.batch_size, "bf16" in str(trainer.precision),
                    bool(pl_module.hparams.get("channels_last")), pl_module.device, self.reference_seconds,
                ),
                "work": "plain SGD training steps of the run's network on synthetic 3x32x32 images, "
                        "the run's batch size, precision and layout (cifar_lightning/reference_rate.py)",
            },
        }
        # a resumed run appends its own start, so the record shows every command that wrote the run
        starts = previous.get("starts", []) + [start]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**start, "starts": starts}, indent=2) + "\n")
        held_out = getattr(trainer.datamodule, "held_out", None)
        if held_out:  # which images validation used, by identity: comparable across sources
            (path.parent / HELD_OUT).write_text("\n".join(held_out) + "\n")


class RandomState(Callback):
    """Carries the global RNG states of torch (CPU and CUDA), numpy and Python in checkpoints.

    Lightning saves none of them. The data pipeline does not need them (its shuffling and
    augmentation are seeded per epoch, ``data/sampling.py``), but a network that draws random
    numbers while training (dropout, stochastic depth) does, for a resumed run to match one
    that never stopped. The states are restored when the first resumed epoch starts, the point
    where they were saved (after the previous epoch's validation), and stored as tensors and
    plain numbers, so checkpoints still load with ``weights_only=True``.
    """

    def __init__(self) -> None:
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        version, python_state, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "python": {"version": version, "state": list(python_state), "gauss": gauss},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        if state["cuda"] and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached_gaussian"]))
        p = state["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


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
        diverged = loss is not None and not bool(torch.isfinite(loss).all())
        # under DDP every process must stop at the same step, or the others would wait for ever in
        # the next gradient all-reduce: one small all-reduce of the flag, as SpikeDetection does
        if trainer.world_size > 1:
            diverged = trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if diverged:
            last = last_checkpoint_path(trainer) or "none yet"
            raise NonFiniteLossError(
                f"the training loss became {_loss_value(loss)} at epoch {trainer.current_epoch}, step {trainer.global_step}: "
                "lower the peak learning rate (--model.optimizer.init_args.lr) or clip gradients "
                f"(--trainer.gradient_clip_val 1.0); last good checkpoint: {last}"
            )


def _loss_value(loss) -> str:
    """This process's loss, or that another DDP process diverged while this one's stayed finite."""
    value = float(loss) if loss is not None else float("nan")
    return str(value) if not torch.isfinite(torch.tensor(value)) else "non-finite on another DDP process"


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
            epoch = re.search(r"epoch(\d+)", Path(checkpoint.best_model_path).name)
            at = f" at epoch {int(epoch.group(1))}" if epoch else ""
            lines.append(f"  best {checkpoint.monitor} = {float(best):.4f}{at}: {checkpoint.best_model_path}")
        if last_checkpoint_path(trainer):
            lines.append(f"  last checkpoint: {last_checkpoint_path(trainer)}")
        if trainer.log_dir:
            lines.append(f"  test it:  python -m cifar_lightning test --config {trainer.log_dir}/config.yaml --ckpt_path <checkpoint>")
            lines.append(f"  report:   python -m cifar_lightning.report {trainer.log_dir}")
            lines.append(f"  curves:   tensorboard --logdir {Path(trainer.log_dir).parent}")
        rank_zero_info("\n".join(lines))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "test/acc" in trainer.callback_metrics:
            rank_zero_info(f"test accuracy: {float(trainer.callback_metrics['test/acc']):.4f} ({trainer.ckpt_path or 'current weights'})")


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
        log_dir = trainer.log_dir  # every rank: under DDP it is a broadcast from rank 0
        probabilities = torch.cat(predictions).float()
        indices = torch.tensor([i for batch in _flat_batches(batch_indices) for i in batch], device=probabilities.device)
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
        output = Path(self.output or Path(log_dir or ".") / "predictions.csv")
        output.parent.mkdir(parents=True, exist_ok=True)
        top = probabilities.topk(min(3, probabilities.shape[1]), dim=1)
        with output.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "class", "probability", "top3"])
            for path, values, top_indices in zip(paths, top.values.tolist(), top.indices.tolist()):
                top3 = " ".join(f"{names[i]}:{v:.4f}" for i, v in zip(top_indices, values))
                writer.writerow([path, names[top_indices[0]], f"{values[0]:.4f}", top3])
        rank_zero_info(f"wrote {len(paths)} predictions to {output}")


def _flat_batches(batch_indices) -> list[list[int]]:
    """Lightning gives one list of batches per dataloader; this project predicts with one."""
    if batch_indices and batch_indices[0] and isinstance(batch_indices[0][0], (list, tuple)):
        return [batch for loader in batch_indices for batch in loader]
    return list(batch_indices)


def _batch_size(batch) -> int:
    return len(batch[0])


class SpeedMonitor(ThroughputMonitor):
    """Images per second and epoch time, in TensorBoard and on the progress bar.

    Lightning's ThroughputMonitor logs ``train/samples_per_sec`` (and batches, per device)
    over a window of steps; this adds ``time/epoch_s`` (training plus validation) and an
    ``img/s`` figure on the progress bar, averaged over the epoch so far.
    """

    def __init__(self, window_size: int = 50) -> None:
        super().__init__(batch_size_fn=_batch_size, window_size=window_size)
        self._module_has_flops = False  # images/s is the measure here; skip its FLOPs warning

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_started = time.perf_counter()
        self._epoch_images = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._epoch_images += _batch_size(batch)
        rate = self._epoch_images / max(time.perf_counter() - self._epoch_started, 1e-9)
        pl_module.log("img/s", rate, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log("time/epoch_s", time.perf_counter() - self._epoch_started, on_step=False, on_epoch=True)


HPARAM_METRICS = ("hp/best_val_acc", "hp/final_val_acc", "hp/test_acc")


def _flatten(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


class HParamsSummary(Callback):
    """TensorBoard's HPARAMS tab: the run's whole config, with its final val and test accuracy.

    The config is the run's ``config.yaml``, flattened (``model.optimizer.init_args.lr``...).
    The tab's metrics are declared once, when the fit starts; their values are scalars logged
    when known: best and final val accuracy at the end of ``fit``, test accuracy when ``test``
    runs on a checkpoint of the run (it logs into the same folder). Set the logger's
    ``default_hp_metric: false``: TensorBoard keeps the first hparams record of a run.
    """

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        config_file = Path(trainer.log_dir or ".") / "config.yaml"  # every rank: log_dir is a broadcast
        if not trainer.is_global_zero or not isinstance(trainer.logger, TensorBoardLogger) or not config_file.is_file():
            return
        import yaml

        params = _flatten(yaml.safe_load(config_file.read_text()) or {})
        # with metrics, the logger writes the HPARAMS tab's experiment and session records
        trainer.logger.log_hyperparams(params, metrics=dict.fromkeys(HPARAM_METRICS, 0.0))

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.logger is None:
            return
        metrics = {}
        best = getattr(trainer.checkpoint_callback, "best_model_score", None)
        if best is not None:
            metrics["hp/best_val_acc"] = float(best)
        if "val/acc" in trainer.callback_metrics:
            metrics["hp/final_val_acc"] = float(trainer.callback_metrics["val/acc"])
        trainer.logger.log_metrics(metrics, step=trainer.global_step)

    @rank_zero_only
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.logger is not None and "test/acc" in trainer.callback_metrics:
            trainer.logger.log_metrics({"hp/test_acc": float(trainer.callback_metrics["test/acc"])}, step=trainer.global_step)


class TestFigures(Callback):
    """At ``test``: the per-class table on the terminal, ``test_confusion_matrix.csv`` in the run
    folder, and in TensorBoard the confusion matrix (torchmetrics' own plot) and a grid of
    misclassified test images.

    Args:
        max_images: how many misclassified images the grid shows (the first ones met).
    """

    def __init__(self, max_images: int = 32) -> None:
        self.max_images = max_images

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.wrong: list[tuple[torch.Tensor, int, int]] = []

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if outputs is None or len(self.wrong) >= self.max_images:
            return
        images, labels = batch
        predicted = outputs.argmax(1)
        for i in (predicted != labels).nonzero().flatten().tolist()[: self.max_images - len(self.wrong)]:
            self.wrong.append((images[i].float().cpu(), int(labels[i]), int(predicted[i])))

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        matrix = pl_module.test_confusion.compute().cpu()  # every rank: the metric syncs across processes
        if not trainer.is_global_zero:
            return
        names = pl_module.hparams.class_names or [str(i) for i in range(len(matrix))]
        per_class = matrix.diag() / matrix.sum(1).clamp(min=1)
        lines = [f"{'class':>12} {'accuracy':>8}  confusion row (predicted " + " ".join(n[:4] for n in names) + ")"]
        lines += [f"{name:>12} {acc:8.2%}  " + " ".join(f"{int(v):4d}" for v in row) for name, acc, row in zip(names, per_class, matrix)]
        rank_zero_info("\n".join(lines))
        if trainer.log_dir is not None:
            with open(Path(trainer.log_dir) / "test_confusion_matrix.csv", "w") as f:
                f.write("true\\predicted," + ",".join(names) + "\n")
                f.writelines(f"{name}," + ",".join(str(int(v)) for v in row) + "\n" for name, row in zip(names, matrix))
        writer = getattr(trainer.logger, "experiment", None)
        if not hasattr(writer, "add_figure"):
            return
        step = trainer.global_step
        figure, _ = pl_module.test_confusion.plot(val=matrix, labels=names, add_text=True)
        writer.add_figure("test/confusion_matrix", figure, step)
        if self.wrong:
            mean = torch.tensor(trainer.datamodule.mean).view(3, 1, 1)
            std = torch.tensor(trainer.datamodule.std).view(3, 1, 1)
            pixels = [((image * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy() for image, _, _ in self.wrong]
            figure = misclassified_figure(np.stack(pixels), [names[t] for _, t, _ in self.wrong], [names[p] for _, _, p in self.wrong])
            writer.add_figure("test/misclassified", figure, step)
        writer.flush()
