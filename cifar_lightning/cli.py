"""``cifar-lightning VERB ...`` (also ``python -m cifar_lightning``): one entry point for every verb.

The Trainer's four verbs go to LightningCLI (``lightning_cli.py``); each other verb to its
module's ``main``, imported only when asked for. This module chooses; it decides nothing else.
"""

from __future__ import annotations

import importlib
import sys

PROG = "cifar-lightning"
# verb -> (the module whose main() runs it, or None for LightningCLI; what it does)
VERBS = {
    "fit": (None, "train a config: fit --config configs/cnn.yaml (the seed recipe)"),
    "validate": (None, "evaluate a checkpoint on the validation split"),
    "test": (None, "evaluate a checkpoint on the test split, with the config's test-time views"),
    "predict": (None, "classify the test split or a folder of images into a CSV"),
    "export": ("cifar_lightning.inference.export", "write torch.export (model.pt2) and ONNX files of a checkpoint"),
    "summary": (
        "cifar_lightning.tools.summary",
        "a config's network layer by layer: shapes, parameters, receptive field, jump, stride",
    ),
    "demo": (
        "cifar_lightning.demo.app",
        "a local demo page of a checkpoint: upload or pick an image, top classes, Grad-CAM (needs [demo])",
    ),
    "preview": (
        "cifar_lightning.tools.preview",
        "a config's augmentation on a few training images, as a PNG, before a long run",
    ),
    "explain": (
        "cifar_lightning.tools.explain",
        "Grad-CAM overlays of a checkpoint's predictions for image files, as PNGs",
    ),
    "report": ("cifar_lightning.tools.report", "a run folder's curves, metrics.csv and summary.json"),
    "lr-find": ("cifar_lightning.tools.lr_find", "Lightning's learning-rate sweep on a config: a plot and a peak rate"),
    "search": (
        "cifar_lightning.tools.search",
        "tune a recipe's settings on the validation split with Optuna (a resumable SQLite study)",
    ),
    "compare": ("cifar_lightning.tools.compare", "a table of what report folders changed against a baseline config"),
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [f"usage: {PROG} VERB [options]   ({PROG} VERB --help for a verb's options)", "", "verbs:"]
    lines += [f"  {verb:<{width}}  {about}" for verb, (_, about) in VERBS.items()]
    return "\n".join(lines)


def quiet_console() -> None:
    """Leave out the library lines a user cannot act on, each by its own message (every other warning shows):
    Lightning 2.6's own call of torch's deprecated ``LeafSpec`` (twice a fit), its advertisement for litlogger,
    and its model summary's note that it sizes bf16 weights as fp32."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model summary")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡 Tip:")
    )


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    quiet_console()
    verb = argv[0] if argv else None
    if verb in (None, "-h", "--help"):
        print(usage())
        return
    module = VERBS.get(verb, (None, ""))[0]
    if module is None:  # the Trainer's verbs, and anything LightningCLI should name as unknown
        from cifar_lightning.lightning_cli import trainer_main

        trainer_main(argv)
        return
    importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    main()
