"""The LightningModule: an injected network, cross-entropy, an optimizer and a per-batch OneCycle."""

from __future__ import annotations

import copy
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse.typing import ClosedUnitInterval, OpenUnitInterval, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from cifar_lightning.data.preprocessing import TTA_VIEWS
from cifar_lightning.data.sources import IMAGE_SIZE
from cifar_lightning.errors import CheckpointError, ConfigError
from cifar_lightning.models import PatchWhitening
from cifar_lightning.runs.checkpoints import read_checkpoint
from cifar_lightning.training.distillation import Distillation
from cifar_lightning.training.trust import (
    check_callback_files,
    check_checkpoint,
    check_loop_state,
    check_optimizer_states,
    check_same_network,
    qualified_name,
)

TTALevel = Literal[tuple(TTA_VIEWS)]  # the levels, as the parser checks them
# 2 px: the recipes translate training images by up to 2 px; a 3-px shift gave most of the gain back
# (validation of four finished checkpoints: results/best/runs/tta-shift/README.md at 9ba0eb0)
TTA_SHIFT_PX = 2


def averaged_views(network, images: Tensor, tta: str) -> Tensor:
    """``network``'s logits averaged over the test-time views of ``tta``: the one definition that evaluation,
    ``predict``, ``load().predict``, ``explain``, the demo and the exported models all use."""
    if tta == "none":
        return network(images)

    def mirrored_pair(views: Tensor) -> Tensor:
        return (network(views) + network(views.flip(3))) / 2  # dim 3: width

    logits = mirrored_pair(images)
    if tta == "flip_shift":
        shift = TTA_SHIFT_PX
        padded = F.pad(images, (shift,) * 4, mode="reflect")
        height, width = images.shape[-2:]
        up_left = padded[..., :height, :width]  # content moves down-right by `shift` pixels
        down_right = padded[..., 2 * shift :, 2 * shift :]  # and up-left
        logits = (logits + (mirrored_pair(up_left) + mirrored_pair(down_right)) / 2) / 2
    return logits


# what a fit logs that a callback may monitor (``_step``; Lightning adds "train/loss" for the epoch's mean)
FIT_METRICS = ("train/loss", "train/loss_epoch", "train/acc", "val/loss", "val/acc")
# torch.compile's modes for the network, and "off"
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]


def empty_schedule(trainer) -> str:
    """Why a fit has no training step to schedule, naming the setting that leaves none."""
    for setting, value in (
        ("trainer.max_steps", trainer.max_steps),
        ("trainer.max_epochs", trainer.max_epochs),
        ("trainer.limit_train_batches", trainer.limit_train_batches),
    ):
        if value == 0:
            return f"{setting}=0 leaves OneCycle no training steps: give it a positive value"
    data = trainer.datamodule
    images = len(data.train_set) if data is not None and hasattr(data, "train_set") else None
    batch = getattr(data, "batch_size", None)
    if images is not None and batch is not None and batch > images:
        return (
            f"data.batch_size={batch} is larger than the training split ({images} images, and a partial last batch "
            "is dropped), which leaves OneCycle no training steps: lower data.batch_size or data.val_size"
        )
    return (
        f"these settings give no training steps ({trainer.num_training_batches} batches an epoch): raise "
        "trainer.limit_train_batches, trainer.max_epochs or trainer.max_steps, or lower data.batch_size"
    )


class ImageClassifier(LightningModule):
    """Trains any image-classification ``network`` (injected, e.g. from YAML's ``class_path``).

    Args:
        network: a plain ``nn.Module`` mapping N x 3 x H x W images to N x ``num_classes`` logits.
        optimizer: builds the optimizer from the parameters; its ``lr`` is OneCycle's peak rate.
        num_classes: number of classes; the CLI sets it and ``class_names`` from the data.
        class_names: names for per-class test results; defaults to the class indices.
        label_smoothing: cross-entropy label smoothing, 0 for none.
        pct_start: fraction of the steps spent warming up to the peak rate.
        div_factor: the starting rate is ``lr / div_factor``.
        final_div_factor: the final rate is the starting rate divided by this.
        channels_last: NHWC memory layout; about 2x faster for this kind of network on CPU.
        tta: views averaged in every evaluation: ``none``; ``flip``, the image and its mirror; ``flip_shift``,
            also both shifted ``TTA_SHIFT_PX`` along the diagonals (6 views). The evaluating command decides it.
        distillation: also train against a frozen teacher's soft targets (``training.distillation.Distillation``).
        compile: ``torch.compile`` the network for a fit in this mode, or ``off``; checkpoints keep their keys.
    """

    def __init__(
        self,
        network: nn.Module,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        num_classes: PositiveInt | None = None,
        class_names: list[str] | None = None,
        label_smoothing: ClosedUnitInterval = 0.0,
        pct_start: OpenUnitInterval = 0.25,
        div_factor: PositiveFloat = 25.0,
        final_div_factor: PositiveFloat = 1e4,
        channels_last: bool = True,
        tta: TTALevel = "none",
        distillation: Distillation | None = None,
        compile: CompileMode = "off",
    ) -> None:
        super().__init__()
        # The test-time views are an evaluation setting, chosen by the command that evaluates:
        # they are not saved with the weights. Built through the CLI, network, optimizer and
        # distillation arrive here as their class_path/init_args (plain data), which is what lets
        # load_from_checkpoint rebuild them with weights_only loading; built in Python they are
        # objects, which a weights_only checkpoint cannot hold, so they are left out then.
        self.save_hyperparameters(ignore=["tta"])
        for key in ("network", "optimizer", "distillation"):
            if not isinstance(self.hparams.get(key), (dict, type(None))):
                del self.hparams[key]
        if tta not in TTA_VIEWS:  # the CLI's type check covers the command line; this, Python callers
            raise ValueError(f"tta must be one of {', '.join(TTA_VIEWS)}, not {tta!r}")
        self.tta = tta
        self.network = network
        self.optimizer_factory = optimizer
        # a plain attribute, not a submodule: the teacher stays out of parameters() and state_dict()
        self.distillation = distillation
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        num_classes = num_classes or (len(class_names) if class_names else 10)
        # no argument checks while training: they call torch.unique, which a GPU answers only by waiting
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc_single_view = MulticlassAccuracy(num_classes, average="micro")  # beside every TTA figure
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        if channels_last:
            self.network.to(memory_format=torch.channels_last)

    def __deepcopy__(self, memo: dict) -> ImageClassifier:
        """The weight average's copy, sharing the trainer (DDP locks cannot be copied), optimizer factory and teacher."""
        for shared in (self._trainer, self.optimizer_factory, self.distillation):
            memo.setdefault(id(shared), shared)
        copied = self.__class__.__new__(self.__class__)
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return copied

    def forward(self, images: Tensor) -> Tensor:
        return self.network(self._layout(images))

    def _layout(self, images: Tensor) -> Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else images

    def evaluate(self, images: Tensor) -> Tensor:
        """Logits for evaluation, averaged over the views of ``tta``."""
        return averaged_views(self, images, self.tta)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, accuracy: MulticlassAccuracy) -> tuple[Tensor, Tensor]:
        images, labels = batch
        images = self._layout(images)  # once: forward's own conversion is then a no-op, and the teacher shares it
        logits = self(images) if stage == "train" else self.evaluate(images)
        loss = self.criterion(logits, labels)
        if stage == "train" and self.distillation is not None:
            loss = self.distillation.loss(logits, loss, images)
        accuracy(logits, labels)
        on_step = stage == "train"
        # val/test loss is averaged over all DDP processes (accuracy is a torchmetrics metric,
        # which syncs itself); the per-step training loss stays local to avoid a sync per step. Lightning
        # reads every progress-bar value from the device after every batch, so the step's loss is not
        # one: the bar (LoggingStepProgressBar) shows it from each logging step
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=not on_step, sync_dist=not on_step)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss, logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train", self.train_acc)[0]

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        _, logits = self._step(batch, "test", self.test_acc)
        self.test_confusion(logits, batch[1])
        if self.views > 1:  # the same images one view each: the figure a TTA accuracy is read against
            self.test_acc_single_view(self(batch[0]), batch[1])
            self.log("test/acc_single_view", self.test_acc_single_view, on_step=False, on_epoch=True)
        return logits  # for callbacks (TestFigures)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        """Per-class accuracy, logged as ``test/acc_class/<name>``; callbacks read ``test_confusion`` for files and figures."""
        matrix = self.test_confusion.compute()  # rows: true class, columns: predicted class
        names = self.hparams.class_names or [str(i) for i in range(len(matrix))]
        for name, accuracy in zip(names, matrix.diag() / matrix.sum(1).clamp(min=1)):
            self.log(f"test/acc_class/{name}", accuracy)
        # the evaluation records its own test-time views beside its accuracy
        self.log("test/views", float(self.views))

    @property
    def views(self) -> int:
        """How many views ``evaluate`` averages: 1, 2 or 6 (``TTA_VIEWS``)."""
        return TTA_VIEWS[self.tta]

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.evaluate(batch[0]).softmax(dim=1)

    def configure_optimizers(self) -> dict[str, Any]:
        # total steps from the Trainer, so max_epochs, batch size or split changes need no other edit
        total_steps = self.trainer.estimated_stepping_batches
        if total_steps == float("inf"):
            raise ConfigError(
                "trainer.max_epochs=-1 with no trainer.max_steps gives OneCycle no length: set either one"
            )
        # Lightning counts max_epochs=0 as one epoch's steps, and then trains none
        if total_steps < 1 or self.trainer.max_epochs == 0:
            raise ConfigError(empty_schedule(self.trainer))
        # torch's OneCycleLR ends its warm-up at step pct_start x total - 1; at exactly step 0 it divides by zero there
        if float(self.hparams.pct_start * int(total_steps)) - 1 == 0:
            raise ConfigError(
                f"model.pct_start={self.hparams.pct_start} of {int(total_steps)} training steps is a one-step warm-up, which "
                "torch's OneCycleLR cannot schedule (it divides by zero): change model.pct_start or the number of steps"
            )
        optimizer = self.optimizer_factory(self.parameters())
        scheduler = OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=int(total_steps),
            pct_start=self.hparams.pct_start,
            div_factor=self.hparams.div_factor,
            final_div_factor=self.hparams.final_div_factor,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        smaller = getattr(datamodule, "smaller_training_sides", ()) if stage == "fit" else ()
        self.image_size = getattr(datamodule, "image_size", IMAGE_SIZE)
        self.check_network((self.image_size, *smaller))
        if self.hparams.get("compile", "off") != "off" and stage == "fit":
            # in place (nn.Module.compile), so parameter names and checkpoint keys stay the network's own
            self.network.compile(mode=self.hparams.compile)

    def check_network(self, sides: tuple[int, ...]) -> None:
        """A blank image of each side through the network before the loop: one that cannot take it, or gives
        another number of outputs than the data has classes, stops in one line, not in the first step."""
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng():
                for side in sides:
                    try:
                        outputs = self.network(torch.zeros(1, 3, side, side, device=self.device)).shape[-1]
                    except (RuntimeError, ValueError) as err:  # shape errors: torch raises either
                        which = "the data's" if side == sides[0] else "data.augmentation.epoch_sides trains on"
                        raise ConfigError(
                            f"the network cannot take {side} x {side} images, {which} ({str(err).splitlines()[0][:120]}): "
                            "use sides it takes, or a network that ends in global pooling"
                        ) from None
                    if outputs != self.test_confusion.num_classes:
                        raise ConfigError(
                            f"the network gives {outputs} outputs an image but there are {self.test_confusion.num_classes} "
                            "classes: give its class a num_classes argument (the CLI sets it from the data), or set "
                            "its own to the data's count"
                        )
        finally:
            self.network.train(was_training)

    def on_fit_start(self) -> None:
        if self.distillation is not None:
            self.distillation.load_teacher(self.device, self.hparams.channels_last)

    def on_train_start(self) -> None:
        # after the callbacks' own on_train_start, where FitPatchWhitening fits the stem
        if any(isinstance(m, PatchWhitening) and not m.weight.any() for m in self.network.modules()):
            raise ConfigError(
                "the network's PatchWhitening stem has not been fitted to the data: add the callback "
                "cifar_lightning.callbacks.FitPatchWhitening to trainer.callbacks (docs/recipes.md)"
            )
        # A resumed OneCycle keeps its saved length; a different max_epochs, batch size or split
        # would otherwise end in torch's "Tried to step X times" crash near the end of the run.
        scheduler = self.lr_schedulers()
        expected = int(self.trainer.estimated_stepping_batches)
        if isinstance(scheduler, OneCycleLR) and scheduler.total_steps != expected:
            raise CheckpointError(
                f"the checkpoint's OneCycle schedule is {scheduler.total_steps} steps long but this config gives "
                f"{expected} (max_epochs, batch size, val_size or limit_train_batches changed): resume with the "
                "run's own config.yaml, or start a new run without --ckpt_path"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["network_class"] = qualified_name(type(self.network))
        checkpoint["network_parameters"] = sum(p.numel() for p in self.network.parameters())
        datamodule = self.trainer.datamodule  # a checkpoint is saved by a Trainer
        preprocessing = getattr(datamodule, "preprocessing", None)
        if preprocessing:
            # what an image must go through before the network: a loaded model needs no data set
            # and the run's test-time views, which every later answer of this checkpoint uses unless asked otherwise
            checkpoint["preprocessing"] = {**preprocessing, "tta": self.tta}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_same_network(checkpoint.get("network_class"), qualified_name(type(self.network)))
        # called before the Trainer restores the optimizer, whose states must fit these parameters,
        # and the loops and callbacks, also when a user calls Trainer.fit(ckpt_path=...) directly
        try:
            where = self.trainer.ckpt_path or "the checkpoint"
        except RuntimeError:  # loaded outside a Trainer (load_from_checkpoint): no optimizer is restored
            where = "the checkpoint"
        check_optimizer_states(checkpoint, list(self.parameters()), str(where))
        check_loop_state(checkpoint, str(where))
        check_callback_files(checkpoint, str(where))

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        *,
        trusted: list[str | type] | str | None = None,
        **kwargs: Any,
    ) -> ImageClassifier:
        """Lightning's ``load_from_checkpoint`` of a file checked first as data (``training.trust``; ``trusted``
        adds class names); the distillation teacher is left out unless given, as evaluation does not use it."""
        if not isinstance(checkpoint_path, (str, Path)):
            raise CheckpointError(
                f"load_from_checkpoint takes a checkpoint file's path, not a {type(checkpoint_path).__name__}"
            )
        check_checkpoint(read_checkpoint(checkpoint_path), cls, trusted, str(checkpoint_path), overrides=kwargs)
        kwargs.setdefault("distillation", None)
        try:
            return super().load_from_checkpoint(
                checkpoint_path,
                map_location=map_location,
                hparams_file=hparams_file,
                strict=strict,
                weights_only=weights_only,
                **kwargs,
            )
        except (ArgumentError, ValueError, TypeError, KeyError) as err:  # a setting the checks above let through
            first = " ".join(str(err).split())[:200]
            raise CheckpointError(
                f"{checkpoint_path} cannot be loaded ({type(err).__name__}: {first}): use the run's own checkpoint"
            ) from None
