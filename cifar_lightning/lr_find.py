"""Lightning's learning-rate finder on a config: a loss-versus-rate plot and a OneCycle peak rate.

    python -m cifar_lightning.lr_find --config configs/cnn.yaml [--out lr_find.png] [--steps 100] [overrides...]

Runs ``Tuner.lr_find`` (an exponential sweep of the rate over ``--steps`` training batches,
then restores the weights) on the config's model, optimizer and data. It prints Lightning's
suggestion, the rate where the loss falls fastest, as the peak rate for OneCycle
(``--model.optimizer.init_args.lr``), and saves the plot with that point marked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lightning.pytorch.tuner import Tuner

from cifar_lightning.cli import build
from cifar_lightning.errors import user_errors


def find_lr(config: str, overrides: list[str], steps: int, min_lr: float, max_lr: float, out: Path) -> float | None:
    cli = build(config, overrides)
    # update_attr=False: the rate lives in the optimizer's config (model.optimizer.init_args.lr),
    # not in a model attribute, so the suggestion is printed for the config instead
    finder = Tuner(cli.trainer).lr_find(
        cli.model, datamodule=cli.datamodule, min_lr=min_lr, max_lr=max_lr, num_training=steps, update_attr=False
    )
    suggestion = finder.suggestion()
    figure = finder.plot(suggest=suggestion is not None)
    figure.axes[0].set_title(f"lr_find on {config}: suggested peak rate {suggestion:.3g}" if suggestion else f"lr_find on {config}")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return suggestion


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default="lr_find.png", help="where the plot goes")
    parser.add_argument("--steps", type=int, default=100, help="training batches in the sweep")
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
    print(f"suggested OneCycle peak rate: {suggestion:.3g}  (--model.optimizer.init_args.lr {suggestion:.3g})")


if __name__ == "__main__":
    main()
