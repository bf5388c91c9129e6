"""``augment.train_transform``'s steps and distributions as tensor operations on a uint8 batch, on its device.

By hand because no library fit: torchvision.transforms.v2 draws one set of parameters a batch, kornia launches
many small kernels a call (kornia #4531). Draws are made on the CPU, a row per image, so they match on every
device; ``apply`` reads nothing back to the host, so a GPU never waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from cifar_lightning.data.augment import Augmentation


@dataclass
class Draws:
    """One image's augmentation per row. Whole pixels: ``shift_x`` moves content right, ``shift_y`` down."""

    flip: Tensor  # bool, mirrored left-right
    shift_x: Tensor  # int64, pixels, 0 where the affine step does not run
    shift_y: Tensor
    scale: Tensor  # float32, relative zoom, 1 where the affine step does not run
    angle: Tensor  # float32, degrees counter-clockwise as albumentations' Affine, 0 where it does not run
    hole: Tensor  # bool, cutout runs
    hole_top: Tensor  # int64, the hole's first row and column, inside the image as CoarseDropout draws them
    hole_left: Tensor

    def to(self, device: torch.device) -> Draws:
        return Draws(**{k: to_device(v, device) for k, v in vars(self).items()})

    def rows(self, index: Tensor) -> Draws:
        return Draws(**{k: v[index] for k, v in vars(self).items()})


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor copied to ``device``; to a GPU from page-locked memory, so the copy does not wait for its queue."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def draw(aug: Augmentation, count: int, size: int, generator: torch.Generator) -> Draws:
    """``count`` images' parameters for ``size``-pixel images, each drawn as albumentations draws it (flip, whole-pixel
    shift, zoom and angle, one cutout hole inside the image)."""

    def chance(p: float) -> Tensor:
        return torch.rand(count, generator=generator) < p

    def uniform(half_width: float) -> Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * half_width

    flip = chance(aug.hflip_p)
    affine = chance(aug.affine_p)
    shift = int(aug.shift_px)
    shift_x = torch.randint(-shift, shift + 1, (count,), generator=generator) * affine
    shift_y = torch.randint(-shift, shift + 1, (count,), generator=generator) * affine
    scale = torch.where(affine, 1 + uniform(aug.scale), torch.ones(count))
    angle = torch.where(affine, uniform(aug.rotate), torch.zeros(count))
    hole = chance(aug.cutout_p) & (aug.cutout_size > 0)
    positions = size - aug.cutout_size + 1
    hole_top = torch.randint(0, positions, (count,), generator=generator)
    hole_left = torch.randint(0, positions, (count,), generator=generator)
    return Draws(flip, shift_x, shift_y, scale, angle, hole, hole_top, hole_left)


def reflect_101(position: Tensor, size: int) -> Tensor:
    """Pixel indices folded back into ``0..size-1`` about the edge pixels (OpenCV's BORDER_REFLECT_101: ``dcb|abcd|cba``)."""
    period = 2 * (size - 1)
    folded = position.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def pixel_table(images: Tensor, fill: Tensor) -> Tensor:
    """N x H x W x C images as an (N * H * W + 1) x C table of pixels, the last row the cutout ``fill``."""
    return torch.cat([images.reshape(-1, images.shape[-1]), fill[None].to(images.dtype)])


def source_pixels(draws: Draws, image: Tensor, height: int, width: int, hole_size: int = 0) -> Tensor:
    """Each output pixel's row in ``pixel_table``: mirrored, shifted with a reflect-101 border, the fill row in a
    cutout hole, so a batch's augmentation is one gather."""
    device = image.device
    rows = reflect_101(torch.arange(height, device=device) - draws.shift_y[:, None], height)
    cols = reflect_101(torch.arange(width, device=device) - draws.shift_x[:, None], width)
    cols = torch.where(draws.flip[:, None], width - 1 - cols, cols)  # the mirror comes first, then the shift
    index = image[:, None, None] * (height * width) + rows[:, :, None] * width + cols[:, None, :]
    if hole_size > 0:
        index = torch.where(in_hole(draws, height, width, hole_size), -1, index)  # -1: the fill row
    return index


def in_hole(draws: Draws, height: int, width: int, size: int) -> Tensor:
    """N x H x W: inside the image's ``size`` x ``size`` cutout hole, where ``draws.hole``."""
    device = draws.flip.device
    rows = torch.arange(height, device=device) - draws.hole_top[:, None]
    cols = torch.arange(width, device=device) - draws.hole_left[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return inside & draws.hole[:, None, None]


def gather_pixels(table: Tensor, index: Tensor) -> Tensor:
    """The pixels of ``table`` at ``index``, N x H x W x C: copied, so a shift equals OpenCV's bit for bit."""
    flat = torch.where(index < 0, len(table) - 1, index).reshape(-1)
    return table.index_select(0, flat).view(*index.shape, table.shape[1])


def scale_and_rotate(images: Tensor, draws: Draws) -> Tensor:
    """Images through albumentations' Affine matrix, bilinear with a reflect-101 border (``grid_sample`` with
    ``align_corners=True`` folds about the edge pixels' centres), rounded to uint8: OpenCV's values to rounding."""
    n, height, width = images.shape[:3]
    device = images.device
    radians = torch.deg2rad(draws.angle)
    cos, sin = torch.cos(radians) * draws.scale, torch.sin(radians) * draws.scale
    # albumentations' forward map about the centre c: x' = R S (x - c) + c + t, with R = [[cos, sin], [-sin, cos]];
    # the sampler needs the inverse, x = (R S)^-1 (x' - c - t) + c
    det = cos * cos + sin * sin
    inverse = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) / det[:, None, None]
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=device)
    shift = torch.stack([draws.shift_x, draws.shift_y], -1).to(inverse.dtype)
    offset = centre - (inverse @ (centre + shift)[:, :, None])[:, :, 0]
    # pixels to grid_sample's [-1, 1] (align_corners=True): u = 2 x / (side - 1) - 1
    to_unit = torch.tensor([2 / (width - 1), 2 / (height - 1)], device=device)
    linear = inverse * to_unit[None, :, None] / to_unit[None, None, :]
    translation = (offset * to_unit - 1) + (linear @ torch.ones(n, 2, 1, device=device))[:, :, 0]
    theta = torch.cat([linear, translation[:, :, None]], 2)
    grid = F.affine_grid(theta, [n, images.shape[3], height, width], align_corners=True)
    source = images.permute(0, 3, 1, 2).float()
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    return warped.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def cutout(images: Tensor, draws: Draws, size: int, fill: Tensor) -> Tensor:
    """A ``size`` x ``size`` hole filled with ``fill`` (C uint8 values) where ``draws.hole``, as CoarseDropout fills it."""
    return torch.where(in_hole(draws, *images.shape[1:3], size)[..., None], fill, images)


def fill_value(mean: tuple[float, ...], device: torch.device) -> Tensor:
    """The training mean in uint8 units, truncated as albumentations casts a float fill to a uint8 image."""
    return torch.tensor([math.floor(255.0 * m) for m in mean], dtype=torch.uint8, device=device)


def augment(images: Tensor, draws: Draws, aug: Augmentation, fill: Tensor) -> Tensor:
    """The training augmentation of N x H x W x C uint8 images, in albumentations' order; ``fill`` is cutout's."""
    n, height, width, _ = images.shape
    number = torch.arange(n, device=images.device)
    hole = aug.cutout_size if aug.cutout_p > 0 else 0
    if aug.scale > 0 or aug.rotate > 0:  # interpolated: the flip is a gather, the warp a grid_sample
        unshifted = Draws(
            **{**vars(draws), "shift_x": torch.zeros_like(draws.shift_x), "shift_y": torch.zeros_like(draws.shift_y)}
        )
        mirrored = gather_pixels(pixel_table(images, fill), source_pixels(unshifted, number, height, width))
        warped = scale_and_rotate(mirrored, draws)
        return cutout(warped, draws, hole, fill) if hole else warped
    # a batch's own table: gathering pixels from the whole split would miss the cache on every pixel
    return gather_pixels(pixel_table(images, fill), source_pixels(draws, number, height, width, hole))


def normalization(mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    """The per-channel ``scale`` and ``bias`` (C x 1 x 1) that ``normalize`` applies: ``(x / 255 - mean) / std``."""
    return (1 / (255.0 * std))[:, None, None], (-mean / std)[:, None, None]


def normalize(images: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """N x H x W x C uint8 to N x C x H x W float32 through ``normalization``'s scale and bias, channels-last in memory."""
    return torch.addcmul(bias, images.permute(0, 3, 1, 2).float(), scale)
