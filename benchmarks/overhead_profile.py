"""Lightning's overhead inside one ``fit``, by sampling: where does a training step's time go?

    python -m benchmarks.overhead_profile [--config configs/fast.yaml] [--batches 300] [--out results/bench-overhead.md] [fit overrides...]

``benchmarks/throughput.py`` compares a plain loop and ``fit`` run one after the other, and on
a small VM the drift between two runs (about ±10%) is larger than the overhead being measured.
This measures within a single run instead: py-spy samples the ``fit`` process's Python stacks
(``--rate`` per second) and each sample taken inside the training loop is put in the first
class, from the leaf up, whose code it is running:

- the work a plain PyTorch loop does too: data loading and augmentation, the network's
  forward, the loss, the metric update, backward, the optimizer and the learning-rate step;
- everything else inside the loop: Lightning's loop, hooks, logging and the project's callbacks.

Overhead = everything else / the plain loop's work. Native time (the convolutions themselves)
is counted in the Python frame that called it, so the classes add up to the whole step.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.throughput import commit_label
from cifar_lightning.runs.provenance import cpu_model

# (class, substrings of a frame "function (file:line)"): the first class whose pattern matches
# any frame, searched from the leaf towards the root, takes the sample
WORK = [
    ("backward", ("torch/autograd/", "_engine_run_backward")),
    ("optimizer and scheduler", ("torch/optim/",)),
    ("metric update", ("torchmetrics/",)),
    ("loss", ("cross_entropy", "torch/nn/modules/loss.py")),
    ("network forward", ("cifar_lightning/models/", "torch/nn/modules/conv.py", "torch/nn/modules/batchnorm.py")),
    ("data", ("torch/utils/data/", "albumentations/", "cifar_lightning/data/")),
]
LOOP_MARK = "fit_loop.py"  # samples outside the fit loop (start-up, imports) are not counted


def classify(stack: str) -> str | None:
    frames = stack.split(";")
    if not any(LOOP_MARK in f for f in frames):
        return None
    for frame in reversed(frames):
        for name, patterns in WORK:
            if any(p in frame for p in patterns):
                return name
    return "Lightning and callbacks (overhead)"


def profile(config: str, batches: int, rate: int, overrides: list[str], work_dir: Path) -> Counter:
    raw = work_dir / "profile.txt"
    fit = [
        sys.executable, "-m", "cifar_lightning", "fit", "--config", config,
        "--trainer.max_epochs=1", f"--trainer.limit_train_batches={batches}", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={work_dir}", *overrides,
    ]  # fmt: skip
    beside_python = Path(sys.executable).with_name("py-spy")  # the venv's, when not on PATH
    spy = shutil.which("py-spy") or (str(beside_python) if beside_python.exists() else None)
    if spy is None:
        sys.exit("error: py-spy is not installed: pip install py-spy (or make bench-overhead, which installs it)")
    result = subprocess.run(
        [spy, "record", "--rate", str(rate), "--format", "raw", "--output", str(raw), "--", *fit],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not raw.is_file():
        sys.exit(f"error: the profiled fit failed:\n{result.stderr[-2000:]}")
    counts: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        kind = classify(stack)
        if kind is not None:
            counts[kind] += int(n)
    return counts


def report(counts: Counter, command: str, data: str) -> str:
    work = sum(n for k, n in counts.items() if not k.endswith("(overhead)"))
    overhead = counts["Lightning and callbacks (overhead)"]
    total = work + overhead
    rows = [f"| {k} | {n:,} | {n / total:.1%} |" for k, n in counts.most_common()]
    return "\n".join([
        "# Lightning's overhead inside one fit, by sampling",
        "",
        f"Written by `{command}`",
        f"(commit {commit_label()}; "
        f"CPU: {cpu_model()}; data: {data}).",
        "",
        "| where the training loop's time went | samples | share |",
        "|---|---|---|",
        *rows,
        "",
        f"**Overhead: {overhead:,} / {work:,} samples = {overhead / work:.1%} of the plain loop's work** "
        f"({total:,} samples in the loop; one sample's share is {1 / total:.2%}).",
        "",
        "Method: `benchmarks/overhead_profile.py` (py-spy samples of one `fit`; each sample is classed by the",
        "innermost frame that belongs to the work a plain PyTorch loop also does; the rest is overhead).",
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/fast.yaml")
    parser.add_argument("--batches", type=int, default=300, help="training batches profiled (one epoch, no validation)")
    parser.add_argument("--rate", type=int, default=50, help="samples per second")
    parser.add_argument("--out", type=Path, default=Path("results/bench-overhead.md"))
    args, overrides = parser.parse_known_args(argv)
    command = "python -m benchmarks.overhead_profile " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="overhead-") as work_dir:
        counts = profile(args.config, args.batches, args.rate, overrides, Path(work_dir))
    archives = [
        a.split("=", 1)[1] if "=" in a else overrides[i + 1]
        for i, a in enumerate(overrides)
        if a.startswith("--data.archive")
    ]
    text = report(counts, command, Path(archives[-1]).name if archives else "the config's data_dir")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
