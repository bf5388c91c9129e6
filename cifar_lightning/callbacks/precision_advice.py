"""One line when a run asks for bfloat16 on a CPU without bfloat16 instructions, where it runs emulated, slower
than float32 (with them it doubles the step rate: results/bench-grid.md at 9ba0eb0)."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities import rank_zero_warn

# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively: x86 AVX-512 BF16 and AMX, Arm's BF16
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags, or None where the file does not say (macOS, Windows have none)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return None


class PrecisionAdvice(Callback):
    """Says, once, which precision to pass when bf16 would run emulated on this CPU."""

    def __init__(self, cpuinfo: str = "/proc/cpuinfo") -> None:
        self.cpuinfo = cpuinfo  # where the CPU's flags are read from

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not isinstance(trainer.accelerator, CPUAccelerator) or "bf16" not in str(trainer.precision):
            return
        flags = cpu_flags(self.cpuinfo)
        if flags is not None and not flags & BF16_FLAGS:
            rank_zero_warn(
                f"this CPU has no bfloat16 instructions, so precision {trainer.precision} runs emulated and slower "
                "than float32 here: pass --trainer.precision 32-true"
            )
