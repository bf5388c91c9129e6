"""A frozen first convolution that whitens 2x2 patches (airbench): each patch projected onto the training patches'
eigenvectors, scaled to unit variance, with both signs; fitted by ``callbacks.FitPatchWhitening``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# added to each eigenvalue: keeps the near-flat directions of JPEG patches from being scaled up
# without bound (airbench's value, in units of normalised pixel variance)
EIGENVALUE_FLOOR = 5e-4


class PatchWhitening(nn.Conv2d):
    """A ``kernel`` x ``kernel`` convolution, no padding, ``2 * in_channels * kernel**2`` outputs; zero until fitted."""

    def __init__(self, in_channels: int = 3, kernel: int = 2) -> None:
        super().__init__(in_channels, 2 * in_channels * kernel * kernel, kernel, padding=0, bias=True)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def fit(self, images: Tensor) -> None:
        """Sets the weights from N x C x H x W normalised training images."""
        k = self.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # N x C x H' x W' x k x k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, self.in_channels * k * k).double()
        covariance = torch.cov(patches.T)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = (eigenvectors.T / (eigenvalues + EIGENVALUE_FLOOR).sqrt()[:, None]).flip(0)  # largest first
        filters = filters.reshape(-1, self.in_channels, k, k).to(self.weight.dtype)
        self.weight.copy_(torch.cat([filters, -filters]))  # copy_ keeps the weight's own memory layout
