"""Lightning's learning-rate sweep on a config, read from the raw losses: a plot and a OneCycle peak rate.

    python -m cifar_lightning.lr_find --config configs/cnn.yaml [--out lr_find.png] [--steps 300] [overrides...]

Runs ``Tuner.lr_find`` (an exponential sweep of the rate over ``--steps`` training batches, then
restores the weights) on the config's model, optimizer and data, and records every step's raw
loss beside it. Lightning's own curve is smoothed with a bias correction one step late (it divides
by ``1 - beta**(step + 1)`` after the step counter has advanced; Lightning issue #14167), so its
first points read about half the true loss and the curve seems to rise at the start. Here the
same exponential smoothing (beta 0.98) is corrected at the right step, the raw losses are drawn
beside it, and the suggestion is the rate where that curve falls fastest per decade.

How far to trust it: the steepest-descent rate is a lower bound for OneCycle's peak, not the
peak. docs/benchmarks.md compares it with the peak rates validation chose for the recipes.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402
from lightning.pytorch.tuner import Tuner  # noqa: E402

from cifar_lightning.cli import build  # noqa: E402
from cifar_lightning.errors import user_errors  # noqa: E402

BETA = 0.98  # Lightning's smoothing factor for the sweep
SKIP_BEGIN, SKIP_END = 10, 5  # points left out of the suggestion: the start is noise, the end diverges


class RawLosses(Callback):
    """Each training step's loss and learning rate, as the sweep ran them."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.rates: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append(float(loss))
            self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def smoothed(losses: list[float], beta: float = BETA) -> list[float]:
    """Exponential moving average with its bias corrected at the right step: point t averages losses 0..t."""
    average, out = 0.0, []
    for t, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (t + 1)))
    return out


def steepest(rates: list[float], curve: list[float]) -> float | None:
    """The rate where ``curve`` falls fastest per decade of rate, or None if it never falls."""
    points = [(math.log10(r), c) for r, c in zip(rates, curve) if math.isfinite(c)][SKIP_BEGIN:-SKIP_END or None]
    slopes = [((c1 - c0) / (x1 - x0), (x0 + x1) / 2) for (x0, c0), (x1, c1) in zip(points, points[1:]) if x1 > x0]
    if not slopes or min(slopes)[0] >= 0:
        return None
    return 10 ** min(slopes)[1]


def find_lr(config: str, overrides: list[str], steps: int, min_lr: float, max_lr: float, out: Path) -> float | None:
    cli = build(config, overrides)
    recorder = RawLosses()
    cli.trainer.callbacks.append(recorder)
    # update_attr=False: the rate lives in the optimizer's config (model.optimizer.init_args.lr)
    Tuner(cli.trainer).lr_find(cli.model, datamodule=cli.datamodule, min_lr=min_lr, max_lr=max_lr, num_training=steps,
                               update_attr=False, early_stop_threshold=None)
    curve = smoothed(recorder.losses)
    suggestion = steepest(recorder.rates, curve)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(recorder.rates, recorder.losses, color="0.75", linewidth=0.8, label="raw loss, each step")
    axes.plot(recorder.rates, curve, color="C0", label=f"smoothed (beta {BETA}, bias corrected)")
    if suggestion is not None:
        axes.axvline(suggestion, color="C3", linestyle="--", label=f"steepest descent: {suggestion:.3g}")
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
    parser.add_argument("--steps", type=int, default=300, help="training batches in the sweep (100 is too few to train)")
    parser.add_argument("--min_lr", type=float, default=1e-5)
    parser.add_argument("--max_lr", type=float, default=10.0)
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    args, overrides = parser.parse_known_args(argv)
    with user_errors(args.verbose, "python -m cifar_lightning.lr_find"):
        suggestion = find_lr(args.config, overrides, args.steps, args.min_lr, args.max_lr, Path(args.out))
    print(f"plot: {args.out}")
    if suggestion is None:
        print("no suggestion: the loss did not fall over the sweep; widen --min_lr/--max_lr or raise --steps")
        sys.exit(1)
    print(f"steepest descent at {suggestion:.3g}: a lower bound for OneCycle's peak rate (--model.optimizer.init_args.lr)")


if __name__ == "__main__":
    main()
