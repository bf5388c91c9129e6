"""What every logger of a run gets besides the module's metrics: the run's settings with its final
accuracies (TensorBoard's HPARAMS tab), and the test figures (the augmentation preview is callbacks/preview.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from cifar_lightning.explain import activation_maps, default_layer, overlay
from cifar_lightning.files import read_yaml
from cifar_lightning.runs import loggers as run_loggers
from cifar_lightning.runs.resume import flatten

HPARAM_METRICS = ("hp/best_val_acc", "hp/final_val_acc", "hp/test_acc")


class HParamsSummary(Callback):
    """The run's flattened config as every logger's hyperparameters, with ``hp/`` metrics logged when known (best
    and final val accuracy after ``fit``, test accuracy after ``test``). Use ``default_hp_metric: false``."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        config_file = Path(trainer.log_dir or ".") / "config.yaml"  # every rank: log_dir is a broadcast
        if not trainer.is_global_zero or not config_file.is_file():
            return
        flat = flatten(read_yaml(config_file) or {})
        # loggers take numbers, strings and booleans; lists and None as text
        params = {
            key: value if isinstance(value, (int, float, str, bool)) else str(value) for key, value in flat.items()
        }
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # with metrics, TensorBoard writes the HPARAMS tab's experiment and session records
                logger.log_hyperparams(params, metrics=dict.fromkeys(HPARAM_METRICS, 0.0))
            else:
                logger.log_hyperparams(params)

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {}
        best = getattr(trainer.checkpoint_callback, "best_model_score", None)
        if best is not None:
            metrics["hp/best_val_acc"] = float(best)
        if "val/acc" in trainer.callback_metrics:
            metrics["hp/final_val_acc"] = float(trainer.callback_metrics["val/acc"])
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @rank_zero_only
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "test/acc" in trainer.callback_metrics:
            for logger in trainer.loggers:
                logger.log_metrics(
                    {"hp/test_acc": float(trainer.callback_metrics["test/acc"])}, step=trainer.global_step
                )


class TestFigures(Callback):
    """At ``test``: the per-class table, ``test_confusion_matrix.csv``, and to every logger (as PNG files for one
    that takes no images) the confusion matrix, misclassified images and their Grad-CAM maps.

    Args:
        max_images: how many misclassified images the grids show (the first ones met).
        cam_layer: the network's layer whose Grad-CAM the second grid shows; default its last convolution.
        cam_opacity: how strongly the map covers the image, 0 (not at all) to 1 (only the map).
    """

    def __init__(self, max_images: int = 32, cam_layer: str | None = None, cam_opacity: float = 0.5) -> None:
        if not 0.0 <= cam_opacity <= 1.0:
            raise ValueError(f"test_figures.cam_opacity must be between 0 and 1, not {cam_opacity}")
        self.max_images = max_images
        self.cam_layer = cam_layer
        self.cam_opacity = cam_opacity

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.wrong: list[tuple[torch.Tensor, int, int]] = []

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if outputs is None or len(self.wrong) >= self.max_images:
            return
        images, labels = batch
        predicted = outputs.argmax(1)
        for i in (predicted != labels).nonzero().flatten().tolist()[: self.max_images - len(self.wrong)]:
            self.wrong.append((images[i].float().cpu(), int(labels[i]), int(predicted[i])))

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        matrix = pl_module.test_confusion.compute().cpu()  # every rank: the metric syncs across processes
        log_dir = trainer.log_dir  # every rank: a broadcast
        if not trainer.is_global_zero:
            return
        if not trainer.loggers:  # no run folder: log_dir is the working folder, and the table is on the terminal
            log_dir = None
        names = pl_module.hparams.class_names or [str(i) for i in range(len(matrix))]
        per_class = matrix.diag() / matrix.sum(1).clamp(min=1)
        # names whole, however long: each row names its class; the columns, the predicted classes, by row number
        width = max(5, *(len(n) for n in names))
        lines = [
            f"{'#':>3} {'class':<{width}} {'accuracy':>8} | predicted as #"
            + "".join(f"{i:>6}" for i in range(len(names)))
        ]
        lines += [
            f"{i:>3} {name:<{width}} {acc:8.2%} | {'':14}" + "".join(f"{int(v):6d}" for v in row)
            for i, (name, acc, row) in enumerate(zip(names, per_class, matrix))
        ]
        rank_zero_info("\n".join(lines))
        if log_dir is not None:
            with open(Path(log_dir) / "test_confusion_matrix.csv", "w") as f:
                f.write("true\\predicted," + ",".join(names) + "\n")
                f.writelines(f"{name}," + ",".join(str(int(v)) for v in row) + "\n" for name, row in zip(names, matrix))
        if not trainer.loggers:
            return
        figures = {"test/confusion_matrix": pl_module.test_confusion.plot(val=matrix, labels=names, add_text=True)[0]}
        if self.wrong:
            mean = torch.tensor(trainer.datamodule.mean).view(3, 1, 1)
            std = torch.tensor(trainer.datamodule.std).view(3, 1, 1)
            pixels = [
                ((image * std + mean).clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy() for image, _, _ in self.wrong
            ]
            true, taken_for = [names[t] for _, t, _ in self.wrong], [names[p] for _, _, p in self.wrong]
            figures["test/misclassified"] = misclassified_figure(np.stack(pixels), true, taken_for)
            maps = activation_maps(
                pl_module.network,
                torch.stack([image for image, _, _ in self.wrong]).to(pl_module.device),
                self.cam_layer,
                [p for _, _, p in self.wrong],
            )
            layer = self.cam_layer or default_layer(pl_module.network)
            figures["test/misclassified_cam"] = misclassified_figure(
                overlay(np.stack(pixels), maps, self.cam_opacity),
                true,
                taken_for,
                title=f"what the network looked at for the class it chose (Grad-CAM of {layer}; true → predicted)",
            )
        log_figures(trainer, figures, log_dir)


def log_figures(trainer: Trainer, figures: dict, log_dir: str | None) -> None:
    """Each figure to every logger that takes images; as ``<tag>.png`` in the run folder for the ones
    that do not (CSV), with one line saying so. Rank zero only; the figures are closed after."""
    import matplotlib.pyplot as plt

    no_images = [
        logger
        for logger in trainer.loggers
        if not all(
            [run_loggers.send_figure(logger, tag, figure, trainer.global_step) for tag, figure in figures.items()]
        )
    ]
    if no_images and log_dir is not None:
        names = []
        for tag, figure in figures.items():
            names.append(f"{tag.replace('/', '_')}.png")
            figure.savefig(Path(log_dir) / names[-1], dpi=100)
        kinds = ", ".join(sorted({type(logger).__name__ for logger in no_images}))
        rank_zero_info(f"{kinds} takes no images: {', '.join(names)} are in {log_dir}")
    for figure in figures.values():
        plt.close(figure)


def misclassified_figure(
    images: np.ndarray,
    true: list[str],
    predicted: list[str],
    columns: int = 8,
    title: str = "misclassified test images (true → predicted)",
):
    """``images``: N x H x W x 3 uint8; each panel titled "true → predicted", the names whole (torchmetrics draws
    the confusion matrix, and nothing draws this grid)."""
    import matplotlib

    matplotlib.use("Agg")  # files and TensorBoard only, no display
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, images, true, predicted):
        ax.imshow(image)
        ax.set_title(f"{t}\n→ {p}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
