"""Figures for TensorBoard and reports: a confusion matrix and a grid of misclassified images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def confusion_matrix_figure(matrix: torch.Tensor, names: list[str], title: str = "confusion matrix") -> plt.Figure:
    """Rows: true class; columns: predicted class; each cell its count, shaded by the row's share."""
    counts = matrix.cpu().numpy().astype(np.int64)
    shares = counts / np.clip(counts.sum(1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def misclassified_figure(images: np.ndarray, true: list[str], predicted: list[str], columns: int = 8) -> plt.Figure:
    """``images``: N x H x W x 3 uint8; each panel titled "true → predicted"."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, images, true, predicted):
        ax.imshow(image)
        ax.set_title(f"{t}\n→ {p}", fontsize=7)
    fig.suptitle("misclassified test images (true → predicted)", fontsize=9)
    fig.tight_layout()
    return fig
