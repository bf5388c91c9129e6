"""Test-only callbacks, importable by class_path from the CLI (tests/ is on sys.path)."""

from __future__ import annotations

import copy
import io
import json
import os
import signal

import torch
from lightning.pytorch import Callback
from torch import nn


class StopAfterEpochs(Callback):
    """Stop a fit cleanly after ``epochs`` epochs, as if the job had been stopped there."""

    def __init__(self, epochs: int = 1) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class RecordTrainStart(Callback):
    """Remembers where training (re)started: epoch, step, scheduler position and optimizer state."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.epoch = trainer.current_epoch
        self.global_step = trainer.global_step
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        self.scheduler_steps = scheduler.last_epoch
        self.lr = scheduler.get_last_lr()[0]
        self.optimizer_state = copy.deepcopy(trainer.optimizers[0].state_dict())


class TinyNet(nn.Sequential):
    """A different architecture, to show a network is a config change (and to mismatch checkpoints)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, num_classes),
        )


class Flat32Net(nn.Sequential):
    """Flattens its 32 x 32 feature map into a linear layer: it takes 32-pixel images only."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, num_classes))


class TenOutputsNet(nn.Sequential):
    """A network with no ``num_classes`` to set: ten outputs, whatever the data."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))


class KillAt(Callback):
    """SIGKILL the whole process at one batch of one epoch: a machine that vanishes mid-epoch."""

    def __init__(self, epoch: int = 1, batch: int = 2) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)


class ReplaceSaveFrom(Callback):
    """From ``epoch`` on, checkpoint writes go through ``broken_save(real_save)`` instead of ``torch.save``."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch >= self.epoch:
            torch.save = self.broken_save(torch.save)

    def broken_save(self, real_save):
        raise NotImplementedError


class DieDuringSave(ReplaceSaveFrom):
    """From ``epoch`` on, the next checkpoint save writes half its bytes and then SIGKILLs itself."""

    def broken_save(self, real_save):
        def half_save_then_die(obj, f, *args, **kwargs):
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            half = buffer.getvalue()[: buffer.tell() // 2]
            if hasattr(f, "write"):
                f.write(half)
                f.flush()
            else:
                with open(f, "wb") as out:
                    out.write(half)
            os.kill(os.getpid(), signal.SIGKILL)

        return half_save_then_die


class DropoutNet(nn.Sequential):
    """Draws from torch's global RNG while training, so exact resume needs that RNG's state."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, num_classes),
        )


class PoisonAt(Callback):
    """Turn one weight infinite at the start of ``epoch``: a loss that goes NaN mid-run."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("inf"))


class RecordLocalAccuracy(Callback):
    """Each DDP rank writes what it alone saw in the last validation: ``<folder>/rank<N>.json``."""

    def __init__(self, folder: str = "ranks") -> None:
        self.folder = folder

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.correct = self.total = 0
        self.first_labels: list[int] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        images, labels = batch
        with torch.no_grad():
            self.correct += int((pl_module(images).argmax(1) == labels).sum())
        self.total += len(labels)
        self.first_labels += labels[:8].tolist()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"correct": self.correct, "total": self.total, "first_labels": self.first_labels}, f)


class RecordWeights(Callback):
    """Each DDP rank saves ``<folder>/rank<N>.pt``: the network's weights after every step, the EMA's average
    and the whitening stem at the end of the fit."""

    def __init__(self, folder: str = "weights") -> None:
        self.folder = folder
        self.steps: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: v.detach().clone() for k, v in pl_module.network.state_dict().items()})

    def on_train_end(self, trainer, pl_module) -> None:
        from cifar_lightning.callbacks import EMAWithWarmup
        from cifar_lightning.models import PatchWhitening

        (ema,) = [c for c in trainer.callbacks if isinstance(c, EMAWithWarmup)]
        (stem,) = [m for m in pl_module.modules() if isinstance(m, PatchWhitening)]
        os.makedirs(self.folder, exist_ok=True)
        record = {
            "steps": self.steps,
            "average": ema._average_model.module.network.state_dict(),  # Lightning has no public accessor
            "decay": ema.decay,
            "stem": stem.weight.detach().clone(),
        }
        torch.save(record, os.path.join(self.folder, f"rank{trainer.global_rank}.pt"))


class FailingTransform:
    """An albumentations-style callable that raises on its ``at``-th call in a process."""

    def __init__(self, transform, at: int) -> None:
        self.transform, self.at, self.calls = transform, at, 0

    def __call__(self, **data):
        self.calls += 1
        if self.calls >= self.at:
            raise ValueError(f"planted failure on call {self.calls}")
        return self.transform(**data)

    def set_random_seed(self, seed: int) -> None:
        self.transform.set_random_seed(seed)


class FailInLoaderAt(Callback):
    """Make the training set's transform raise on its ``at``-th image (in each loader worker)."""

    def __init__(self, at: int = 40) -> None:
        self.at = at

    def setup(self, trainer, pl_module, stage: str) -> None:
        dataset = trainer.datamodule.train_set
        dataset.transform = FailingTransform(dataset.transform, self.at)


class FailSavesFrom(ReplaceSaveFrom):
    """From ``epoch`` on, every checkpoint write fails as a full disk would (OSError ENOSPC)."""

    def broken_save(self, real_save):
        import errno

        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return no_space


class PoisonBatchOnRank(Callback):
    """Make one DDP process's inputs infinite at ``epoch``, ``batch``: a loss that diverges on that rank alone."""

    def __init__(self, rank: int = 1, epoch: int = 0, batch: int = 1) -> None:
        self.rank, self.epoch, self.batch = rank, epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.global_rank, trainer.current_epoch, batch_idx) == (self.rank, self.epoch, self.batch):
            batch[0].fill_(float("inf"))


TRACED_BY_COMPILER: list[bool] = []


class CompileProbeNet(TinyNet):
    """TinyNet that notes whether torch.compile traced its forward (tests/test_compile.py)."""

    def forward(self, images):
        if torch.compiler.is_compiling():
            TRACED_BY_COMPILER.append(True)
        return super().forward(images)
