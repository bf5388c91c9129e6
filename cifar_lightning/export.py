"""Ship a trained network: TorchScript and ONNX files of a checkpoint.

    python -m cifar_lightning.export --config RUN/config.yaml --ckpt_path RUN/checkpoints/last.ckpt [--out DIR]

Writes ``model.ts`` (TorchScript), ``model.onnx`` and ``model.json`` into ``DIR`` (default:
an ``export/`` folder beside the checkpoint's folder). Both files take a float tensor
N x 3 x 32 x 32 of RGB values in [0, 1] and return N x 10 logits: the training statistics'
normalization is built in, so callers need nothing but the pixels. ``model.json`` names the
classes and the input. The checkpoint is read with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from cifar_lightning.cli import build
from cifar_lightning.errors import user_errors
from cifar_lightning.checkpoints import read_checkpoint
from cifar_lightning.errors import CheckpointError

IMAGE_SHAPE = (3, 32, 32)


class NormalizedNetwork(nn.Module):
    """The trained network behind the data module's normalization: [0, 1] RGB in, logits out."""

    def __init__(self, network: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.network((images - self.mean) / self.std)


def load_for_export(config: str, ckpt_path: str, overrides: list[str]) -> tuple[NormalizedNetwork, list[str]]:
    """Build the config's model and data module, load the checkpoint's weights into the network."""
    checkpoint = read_checkpoint(ckpt_path)  # refused before anything is built
    cli = build(config, overrides)
    model, datamodule = cli.model, cli.datamodule
    model.on_load_checkpoint(checkpoint)  # refuses another architecture by name
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{ckpt_path} does not fit the config's network ({str(err).splitlines()[0]})") from None
    network = model.network.to(memory_format=torch.contiguous_format).eval()
    preprocessing = checkpoint.get("preprocessing")
    if preprocessing:  # the statistics the network was trained behind, whatever data is present now
        return NormalizedNetwork(network, preprocessing["mean"], preprocessing["std"]).eval(), list(preprocessing["class_names"])
    datamodule.prepare_data()  # a checkpoint from before 2026-11-26: the training split's statistics again
    datamodule.setup("fit")
    return NormalizedNetwork(network, datamodule.mean, datamodule.std).eval(), list(datamodule.classes)


def export(model: NormalizedNetwork, classes: list[str], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, *IMAGE_SHAPE)
    paths = {"torchscript": out / "model.ts", "onnx": out / "model.onnx", "info": out / "model.json"}
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example), paths["torchscript"])
        batch = torch.export.Dim("batch", min=1, max=65536)
        program = torch.onnx.export(model, (example,), dynamic_shapes=({0: batch},), input_names=["images"],
                                    output_names=["logits"], dynamo=True, verbose=False)
        program.save(str(paths["onnx"]))
    paths["info"].write_text(json.dumps({
        "input": {"name": "images", "shape": ["N", *IMAGE_SHAPE], "dtype": "float32", "range": [0, 1], "channels": "RGB"},
        "output": {"name": "logits", "shape": ["N", len(classes)]},
        "classes": classes,
    }, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's config.yaml")
    parser.add_argument("--ckpt_path", required=True, help="the checkpoint to export")
    parser.add_argument("--out", help="output folder (default: <run>/export)")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    args, overrides = parser.parse_known_args(argv)
    out = Path(args.out) if args.out else Path(args.ckpt_path).resolve().parent.parent / "export"
    with user_errors(args.verbose, "python -m cifar_lightning.export"):
        model, classes = load_for_export(args.config, args.ckpt_path, overrides)
        paths = export(model, classes, out)
    for kind, path in paths.items():
        print(f"{kind:>12}: {path}")


if __name__ == "__main__":
    main()
