"""Lightning's learning-rate sweep on a config, read from the raw losses: a plot and a OneCycle peak rate.

``Tuner.lr_find``'s curve corrects its smoothing's bias one step late (Lightning #14167), so its first points
read half the loss; here each step's raw loss is recovered and smoothed again. The suggestion, a tenth of the
rate at the lowest point, came within 4x of the rates validation chose for three recipes (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.tuner import Tuner  # noqa: E402

from cifar_lightning.errors import user_errors  # noqa: E402
from cifar_lightning.lightning_cli import build  # noqa: E402

BETA = 0.98  # Lightning's smoothing factor for the sweep
SKIP_BEGIN = 10  # the sweep's first points, noise: a minimum among them gives no suggestion


# Lightning's sweep records its smoothed loss only. Point t (0-based) is avg_t / (1 - beta**(t + 2)):
# the step counter has already advanced when it divides (issue #14167), where avg_t / (1 - beta**(t + 1))
# was meant. Undoing that division gives the running average, and the average gives each raw loss.
LIGHTNING_STEP_OFFSET = 2


def raw_losses(lightning_smoothed: list[float], beta: float = BETA) -> list[float]:
    """Each step's own loss, recovered from the curve Lightning's sweep recorded."""
    raw, previous = [], 0.0
    for t, value in enumerate(lightning_smoothed):
        average = value * (1 - beta ** (t + LIGHTNING_STEP_OFFSET))
        raw.append((average - beta * previous) / (1 - beta))
        previous = average
    return raw


def smoothed(losses: list[float], beta: float = BETA) -> list[float]:
    """Exponential moving average with its bias corrected at the right step: point t averages losses 0..t."""
    average, out = 0.0, []
    for t, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (t + 1)))
    return out


def tenth_of_minimum(rates: list[float], curve: list[float]) -> float | None:
    """A tenth of the rate at the smoothed loss's lowest point (past it the loss diverges): the usual guess for a
    one-cycle peak; None when that point is among the first ``SKIP_BEGIN``, noise."""
    lowest = min((i for i, c in enumerate(curve) if math.isfinite(c)), key=lambda i: curve[i], default=None)
    return None if lowest is None or lowest < SKIP_BEGIN else rates[lowest] / 10


def find_lr(config: str, overrides: list[str], steps: int, min_lr: float, max_lr: float, out: Path) -> float | None:
    # Tuner.lr_find saves the starting weights as .lr_find_<uuid>.ckpt in the trainer's root folder and
    # deletes it only when the sweep ends normally: a temporary root folder goes on failure or Ctrl-C too
    with tempfile.TemporaryDirectory(prefix="cifar-lightning-lr-find-") as scratch:
        cli = build(config, [*overrides, f"--trainer.default_root_dir={scratch}"], classes_from_data=True)
        # update_attr=False: the rate lives in the optimizer's config (model.optimizer.init_args.lr)
        finder = Tuner(cli.trainer).lr_find(
            cli.model,
            datamodule=cli.datamodule,
            min_lr=min_lr,
            max_lr=max_lr,
            num_training=steps,
            update_attr=False,
            early_stop_threshold=None,
        )
    rates, losses = finder.results["lr"], raw_losses(finder.results["loss"])
    curve = smoothed(losses)
    suggestion = tenth_of_minimum(rates, curve)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(rates, losses, color="0.75", linewidth=0.8, label="raw loss, each step")
    axes.plot(
        rates,
        finder.results["loss"],
        color="C1",
        linewidth=0.8,
        linestyle=":",
        label="Lightning's curve (bias one step late)",
    )
    axes.plot(rates, curve, color="C0", label=f"smoothed (beta {BETA}, bias corrected)")
    if suggestion is not None:
        axes.axvline(suggestion, color="C3", linestyle="--", label=f"a tenth of the minimum's rate: {suggestion:.3g}")
    finite = [c for c in curve if math.isfinite(c)]
    axes.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=f"lr_find on {config}, {steps} steps")
    if finite:
        axes.set_ylim(min(finite) * 0.9, min(max(finite), 3 * curve[0]) * 1.1)
    axes.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return suggestion


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="lr_find.png", help="where the plot goes")
    parser.add_argument(
        "--steps", type=int, default=300, help="training batches in the sweep (100 is too few to train)"
    )
    parser.add_argument("--min_lr", type=float, default=1e-5)
    parser.add_argument("--max_lr", type=float, default=10.0)
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    args, overrides = parser.parse_known_args(argv)
    # SIGTERM (a scheduler, `timeout`) would otherwise kill the process where it stands; as an
    # exception it unwinds, and the sweep's scratch folder goes with it
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with user_errors(args.verbose, "cifar-lightning lr-find"):
        suggestion = find_lr(args.config, overrides, args.steps, args.min_lr, args.max_lr, Path(args.out))
    print(f"plot: {args.out}")
    if suggestion is None:
        print("no suggestion: the loss did not fall over the sweep; widen --min_lr/--max_lr or raise --steps")
        sys.exit(1)
    print(
        f"suggested OneCycle peak rate: {suggestion:.3g} (a tenth of the rate at the lowest loss; "
        f"--model.optimizer.init_args.lr {suggestion:.3g}). Validate before trusting it: docs/benchmarks.md"
    )


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit("error: the learning-rate sweep was stopped (SIGTERM); it wrote nothing: run it again")


if __name__ == "__main__":
    main()
