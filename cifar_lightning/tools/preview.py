"""``cifar-lightning preview``: the augmentation a config trains with, on a fixed set of training images, as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from cifar_lightning.errors import user_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning preview", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a recipe (configs/cnn.yaml) or a run's config.yaml")
    parser.add_argument(
        "--out", type=Path, default=Path("augmentation.png"), help="the PNG to write (default augmentation.png)"
    )
    parser.add_argument("--images", type=int, default=8, help="training images, one of each class first (default 8)")
    parser.add_argument("--draws", type=int, default=5, help="augmented versions of each (default 5)")
    args, overrides = parser.parse_known_args(argv)
    with user_errors(False, "cifar-lightning preview"):
        import matplotlib.pyplot as plt

        from cifar_lightning.callbacks.preview import preview_figure
        from cifar_lightning.errors import ConfigError
        from cifar_lightning.lightning_cli import build

        if args.images < 1 or args.draws < 1:
            raise ConfigError(f"--images and --draws must be at least 1 (got {args.images}, {args.draws})")
        datamodule = build(args.config, overrides).datamodule
        datamodule.prepare_data()
        datamodule.setup("fit")
        figure = preview_figure(datamodule, args.images, args.draws)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=110)
        plt.close(figure)
        print(
            f"wrote {args.out}: {args.images} training images, {args.draws} draws each ({datamodule.pipeline} pipeline)"
        )


if __name__ == "__main__":
    main()
