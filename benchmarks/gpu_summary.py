"""The GPU session's table (``benchmarks/gpu_session.sh``): each fit's epochs, seconds an epoch, and the GPU's
busy share over the fit, read from its run folder and its utilisation samples.

    python -m benchmarks.gpu_summary LOGS_DIR OUT_DIR > OUT_DIR/summary.md
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from cifar_lightning.tools.report import read_scalars


def busy_share(samples: Path) -> str:
    """The mean of nvidia-smi's utilization.gpu samples (every 200 ms over the fit command), or a dash."""
    if not samples.is_file():
        return "–"
    with samples.open(newline="") as f:
        values = [float(row[1]) for row in csv.reader(f) if len(row) > 2 and row[1].strip().isdigit()]
    return f"{statistics.mean(values):.0f}%" if values else "–"


def table(logs: Path, out: Path) -> str:
    lines = [
        "| fit | epochs done | seconds of those epochs | s/epoch after the first | GPU busy | last val acc |",
        "|---|---|---|---|---|---|",
    ]
    for run in sorted(p for p in logs.iterdir() if p.is_dir()):
        scalars = read_scalars(run)
        epochs = [value for _, _, value in scalars.get("time/epoch_s", [])]
        later = f"{statistics.median(epochs[1:]):.2f}" if len(epochs) > 1 else "–"
        val = scalars.get("val/acc", [])
        lines.append(
            f"| {run.name} | {len(epochs)} | {sum(epochs):.1f} | {later} | {busy_share(out / f'util-{run.name}.csv')} | "
            f"{f'{val[-1][2]:.4f}' if val else '–'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]), Path(sys.argv[2])))
