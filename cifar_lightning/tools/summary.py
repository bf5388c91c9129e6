"""A config's network, layer by layer: output shape, parameters, receptive field, jump, cumulative stride."""

from __future__ import annotations

import argparse

from cifar_lightning.errors import user_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning summary", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a recipe (configs/cnn.yaml) or a run's config.yaml")
    args, overrides = parser.parse_known_args(argv)
    with user_errors(False, "cifar-lightning summary"):
        from cifar_lightning.explain.receptive_field import format_table
        from cifar_lightning.lightning_cli import build

        cli = build(args.config, overrides)
        print(format_table(cli.model.network, cli.datamodule.image_size))  # at the size the config reads images


if __name__ == "__main__":
    main()
