"""``cifar-lightning VERB ...``: the Trainer's verbs through LightningCLI (``lightning_cli.py``), each other verb
through its module's ``main``, every user error as one line."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

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
    """Leave out, each by its message, library lines a user cannot act on: Lightning 2.6's own deprecated
    ``LeafSpec`` call, its litlogger tip, and its summary's note on sizing bf16 weights."""
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
        trainer_verbs(argv)
        return
    importlib.import_module(module).main(argv[1:])


def check_config_arguments(argv: list[str]) -> None:
    """Each ``--config`` (a file, or YAML text) is bounded before jsonargparse reads it (``files.load_yaml``)."""
    from cifar_lightning.files import load_yaml, read_yaml

    for i, arg in enumerate(argv):
        value = (
            arg.split("=", 1)[1]
            if arg.startswith("--config=")
            else argv[i + 1]
            if arg == "--config" and i + 1 < len(argv)
            else None
        )
        if value is None:
            continue
        if len(value) < 4096 and "\n" not in value and os.path.lexists(value):
            read_yaml(Path(value))  # refuses anything but a regular file: jsonargparse's open() would wait on a FIFO
        else:
            load_yaml(value, "the --config text")


def trainer_verbs(argv: list[str]) -> None:
    """The Trainer's verbs through LightningCLI; ``--verbose`` (or ``CIFAR_LIGHTNING_VERBOSE=1``) shows tracebacks."""
    import warnings

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from cifar_lightning.errors import shell_command, user_errors
    from cifar_lightning.lightning_cli import run_cli
    from cifar_lightning.runs import folders as run_folders
    from cifar_lightning.runs.resume import RunFinished

    # ours, not LightningCLI's (Trainer's arguments would clash with it): read and left out here.
    # sys.argv stays as typed, so DDP processes started from it strip the flag the same way.
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    subcommand = next((a for a in argv if not a.startswith("-")), "fit")
    try:
        with user_errors(verbose, f"{shell_command()} {subcommand}"), warnings.catch_warnings():
            check_config_arguments(argv)
            # the arguments are the command line's, less --verbose
            warnings.filterwarnings(
                "ignore", message="LightningCLI's args parameter is intended to run from within Python"
            )
            try:
                run_cli(argv)
            except Exception:  # a failure, not a stop (SIGTERM, Ctrl-C): a stopped run keeps its folder
                # lightning_logs/ holds runs, not traces of typos. Here, after the Trainer has closed its
                # loggers, not in a callback while they still write.
                for folder in list(run_folders.CLAIMED):
                    run_folders.release_unused(folder)
                raise
    except RunFinished as done:
        print(str(done), file=sys.stderr)
    except SIGTERMException:  # ResumeHint has said how to resume
        sys.exit(128 + 15)  # the shell's convention for "terminated by SIGTERM"


if __name__ == "__main__":
    main()
