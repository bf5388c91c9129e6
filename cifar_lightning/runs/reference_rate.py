"""A reference rate measured beside every timed run, so that minutes can be compared across machines.

Two machines of the same kind ran the fast recipe at 2,436 and 1,400 images/s (results/fast/NOTES.md). A fit's
minutes alone therefore say little; with the rate of a fixed piece of work, measured on the same
machine at the same moment, they can be scaled. The work: training steps of a copy of the run's
network on synthetic images at the run's batch size, precision and memory layout, with SGD; no
data pipeline, no Lightning. It uses its own random streams (``torch.random.fork_rng``), so the
run it sits beside draws the same numbers with or without it.

The reference rate depends on the run's network, so it compares days of one recipe only. The
yardstick is one fixed piece of work for every run: the same steps with SeedNet in fp32 at batch
256 on contiguous images. Its committed value on this project's 2-core CPU
(``YARDSTICK_REFERENCE``, measured on an idle machine: results/yardstick.md) turns any run's fit
minutes into minutes of that machine: scaled = raw x (yardstick now / yardstick reference).
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn import functional as F

WARMUP_STEPS = 3  # first steps allocate and pick kernels: not timed
YARDSTICK_BATCH = 256  # images a step: the fast recipe's batch
# images/s of the yardstick on the 2-core CPU the targets are set on, idle (results/yardstick.md);
# a run on another kind of device has no committed value, and no scaled minutes
YARDSTICK_REFERENCE = {"cpu": 1031.0}
YARDSTICK_WORK = "plain SGD training steps of SeedNet, fp32, batch 256, contiguous, on synthetic 3x32x32 images (reference_rate.py)"


def train_step_rate(network: nn.Module, batch_size: int, bf16: bool, channels_last: bool, device: torch.device,
                    seconds: float, image_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10) -> float | None:
    """Images per second of plain training steps on a copy of ``network``, timed for about ``seconds``."""
    if seconds <= 0:
        return None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = copy.deepcopy(network).to(device).train()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=layout)
        generator = torch.Generator(device="cpu").manual_seed(0)
        images = torch.randn(batch_size, *image_shape, generator=generator).to(device).contiguous(memory_format=layout)
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

        def step() -> None:
            with autocast:
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(WARMUP_STEPS):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            steps += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return steps * batch_size / (time.perf_counter() - started)


def yardstick_rate(device: torch.device, seconds: float) -> float | None:
    """Images per second of the yardstick (SeedNet, fp32, batch 256) on ``device``, timed for about ``seconds``."""
    from cifar_lightning.models.seed import SeedNet

    return train_step_rate(SeedNet(), YARDSTICK_BATCH, bf16=False, channels_last=False, device=device, seconds=seconds)


def scaled_minutes(minutes: float | None, yardstick: float | None, device_type: str | None) -> float | None:
    """A fit's minutes on the reference machine: raw minutes x (yardstick now / its committed value); None without both."""
    reference = YARDSTICK_REFERENCE.get(device_type or "")
    if minutes is None or not yardstick or not reference:
        return None
    return minutes * yardstick / reference
