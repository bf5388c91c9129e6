"""A network's layer table: output shape, parameters, receptive field, jump and cumulative stride.

Rows are torchsummary's. The field follows the data flow: a forward pass under a ``TorchFunctionMode`` carries
each tensor's field and jump through every torch call (a convolution or pool: ``r += (k - 1) * dilation * j``,
``j *= stride``; anything else passes on its inputs' largest). No library fitted: torchsummary has no field,
and the receptive-field packages follow module order, which a residual branch breaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# the calls a forward pass makes, as __torch_function__ names them (F.conv2d is torch.conv2d)
CONVOLUTIONS = {F.conv2d}
MAX_POOLS = {F.max_pool2d, torch.max_pool2d}
POOLS = MAX_POOLS | {F.avg_pool2d}
GLOBAL_POOLS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d}


@dataclass(frozen=True)
class Field:
    """The receptive field (pixels of the input) and jump (input pixels between neighbours), per axis (height, width)."""

    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)

    def grown(self, kernel, stride, dilation) -> Field:
        return Field(
            tuple(r + (k - 1) * d * j for r, k, d, j in zip(self.size, kernel, dilation, self.jump)),
            tuple(j * s for j, s in zip(self.jump, stride)),
        )

    @staticmethod
    def largest(fields: list[Field]) -> Field:
        return Field(
            tuple(max(f.size[i] for f in fields) for i in range(2)),
            tuple(max(f.jump[i] for f in fields) for i in range(2)),
        )


def pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def argument(args, kwargs, position: int, name: str, default):
    return kwargs.get(name, args[position] if len(args) > position else default)


class FieldTracker(TorchFunctionMode):
    """Carries a Field with every tensor a forward pass makes (see the module's docstring)."""

    def __init__(self, image: Tensor) -> None:
        super().__init__()
        self.fields: dict[int, tuple[Tensor, Field]] = {
            id(image): (image, Field())
        }  # the tensor kept: its id stays its own

    def field(self, tensor) -> Field | None:
        entry = self.fields.get(id(tensor))
        return entry[1] if entry is not None and entry[0] is tensor else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        tensors = [
            a
            for a in list(args) + list(kwargs.values())
            for a in (a if isinstance(a, (list, tuple)) else [a])
            if isinstance(a, Tensor)
        ]
        known = [f for f in map(self.field, tensors) if f is not None]
        if not known or not isinstance(output, Tensor):
            return output
        source = self.field(tensors[0]) or Field.largest(known)
        if func in CONVOLUTIONS:
            weight = argument(args, kwargs, 1, "weight", None)
            kernel = tuple(weight.shape[2:])
            field = source.grown(
                pair(kernel),
                pair(argument(args, kwargs, 3, "stride", 1)),
                pair(argument(args, kwargs, 5, "dilation", 1)),
            )
        elif func in POOLS:
            kernel = pair(argument(args, kwargs, 1, "kernel_size", 1))
            stride = argument(args, kwargs, 2, "stride", None)
            dilation = argument(args, kwargs, 4, "dilation", 1) if func in MAX_POOLS else 1
            field = source.grown(kernel, pair(stride) if stride not in (None, []) else kernel, pair(dilation))
        elif func in GLOBAL_POOLS and tuple(output.shape[-2:]) == (1, 1):
            field = source.grown(tuple(tensors[0].shape[-2:]), (1, 1), (1, 1))
        else:
            field = Field.largest(known)
        self.fields[id(output)] = (output, field)
        return output


@dataclass(frozen=True)
class Row:
    name: str  # "Conv2d-1", as torchsummary numbers them
    module: str  # the module's name in the network ("features.0.0")
    shape: tuple[int, ...]
    parameters: int
    field: Field | None
    jump_in: tuple[int, int] | None


def layer_table(network: nn.Module, image_size: int = 32) -> list[Row]:
    """One row per module of ``network`` (containers left out), for one 3 x ``image_size`` square image, in eval mode."""
    image = torch.zeros(1, 3, image_size, image_size)
    names = {module: name for name, module in network.named_modules()}
    rows: list[Row] = []
    inputs: dict[nn.Module, Field | None] = {}
    tracker = FieldTracker(image)

    def before(module, args):
        inputs[module] = tracker.field(args[0]) if args and isinstance(args[0], Tensor) else None

    def after(module, args, output):
        if isinstance(output, Tensor):
            field = tracker.field(output)
            rows.append(
                Row(
                    f"{type(module).__name__}-{len(rows) + 1}",
                    names[module],
                    tuple(output.shape[1:]),
                    sum(p.numel() for p in module.parameters(recurse=False)),
                    field,
                    inputs[module].jump if inputs.get(module) else None,
                )
            )

    modules = [m for m in network.modules() if m is not network and not isinstance(m, CONTAINERS)]
    handles = [h for m in modules for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), tracker:
            network(image)
    finally:
        for handle in handles:
            handle.remove()
        network.train(was_training)
    return rows


def side(value: tuple[int, int] | None) -> str:
    if value is None:
        return "-"
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


def format_table(network: nn.Module, image_size: int = 32) -> str:
    rows = layer_table(network, image_size)
    width = max(len(row.module) for row in rows) if rows else 6
    header = f"{'Layer (type)':>25} {'module':<{width}} {'Output Shape':>18} {'Param #':>9} {'RF':>5} {'jump in':>8} {'stride':>7}"
    lines = [header, "=" * len(header)]
    for row in rows:
        shape = "[-1, " + ", ".join(map(str, row.shape)) + "]"
        lines.append(
            f"{row.name:>25} {row.module:<{width}} {shape:>18} {row.parameters:>9,} {side(row.field.size if row.field else None):>5} "
            f"{side(row.jump_in):>8} {side(row.field.jump if row.field else None):>7}"
        )
    total = sum(p.numel() for p in network.parameters())
    spatial = [row for row in rows if len(row.shape) == 3 and row.field is not None and row.shape[1:] != (1, 1)]
    final = spatial[-1] if spatial else None
    lines += [
        "=" * len(header),
        f"Total params: {total:,}",
        "RF: receptive field in input pixels; jump in: input pixels between neighbouring positions of the layer's input; "
        "stride: the same at its output (the cumulative stride)",
    ]
    if final is not None:
        lines.append(
            f"Receptive field: {side(final.field.size)} pixels (of a {image_size}x{image_size} input) at {final.module}, "
            f"the last layer before the global pooling; cumulative stride {side(final.field.jump)}"
        )
    return "\n".join(lines)
