"""Figures torchmetrics does not draw: a grid of misclassified images, and the augmentation preview.
(The confusion matrix is torchmetrics' own ``MulticlassConfusionMatrix.plot``.)"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def misclassified_figure(
    images: np.ndarray,
    true: list[str],
    predicted: list[str],
    columns: int = 8,
    title: str = "misclassified test images (true → predicted)",
) -> plt.Figure:
    """``images``: N x H x W x 3 uint8; each panel titled "true → predicted"."""
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


def augmentation_figure(originals: np.ndarray, draws: np.ndarray, names: list[str], title: str) -> plt.Figure:
    """One row an image: the training image, then its augmented draws (``draws``: N x D x H x W x 3 uint8)."""
    rows, columns = len(originals), 1 + draws.shape[1]
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.25), dpi=100, squeeze=False)
    for row, (original, drawn, name) in enumerate(zip(originals, draws, names)):
        for column, image in enumerate([original, *drawn]):
            ax = axes[row, column]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("image" if column == 0 else f"draw {column}", fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig
