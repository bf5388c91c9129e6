"""The yardstick's rate on this machine: the value ``reference_rate.YARDSTICK_REFERENCE`` commits.

    python -m benchmarks.yardstick [--repeats 7] [--seconds 5] [--out results/yardstick.md]

Times the yardstick (plain SGD steps of SeedNet, fp32, batch 256, synthetic images; the work every
fit times beside itself when it starts) ``--repeats`` times for ``--seconds`` each, and writes the
median, the range, the command, the commit and the machine. Run it with nothing else on the
machine: it is the value every run's minutes are scaled to.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from cifar_lightning.runs import provenance
from cifar_lightning.runs.reference_rate import YARDSTICK_WORK, yardstick_rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("results/yardstick.md"))
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rates = [yardstick_rate(device, args.seconds) for _ in range(args.repeats)]
    median = statistics.median(rates)
    machine = provenance.machine()
    lines = [
        "# The yardstick on this machine",
        "",
        f"Work: {YARDSTICK_WORK}; on {device.type}.",
        "",
        f"- median **{median:,.0f} images/s** of {args.repeats} repeats of {args.seconds:g} s "
        f"(range {min(rates):,.0f} to {max(rates):,.0f}; each: {', '.join(f'{r:,.0f}' for r in rates)})",
        f"- command: `python -m benchmarks.yardstick {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip() + "",
        f"- commit: {provenance.commit_label()}",
        f"- machine: {machine['cpu']}, {machine['cpu_count']} cores, {machine['torch_threads']} torch threads, "
        f"GPU: {machine['gpu'] or 'none'}; {machine['platform']}; torch {torch.__version__}",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
