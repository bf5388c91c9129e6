"""A figure torchmetrics does not draw: a grid of misclassified images. (The confusion matrix is\ntorchmetrics' own ``MulticlassConfusionMatrix.plot``.)"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
