"""The option table in docs/configuration.md, generated from the parser so it cannot drift.

    python scripts/option_table.py            # rewrite the table between the markers
    python scripts/option_table.py --check    # exit 1 if the committed table differs

Every key `fit --config configs/cnn.yaml --print_config` shows, with its value there; the help
text of each is `cifar-lightning fit --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import yaml

from cifar_lightning.runs.resume import flatten

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "configuration.md"
START, END = "<!-- options:start -->", "<!-- options:end -->"
SKIPPED = ("trainer.logger.init_args.", "checkpoint.", "last_checkpoint.", "lr_monitor.", "model_summary.")


def printed_config() -> str:
    """What ``cifar-lightning fit --config configs/cnn.yaml --print_config`` prints."""
    from cifar_lightning.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["fit", "--config", str(REPO / "configs" / "cnn.yaml"), "--print_config"])
        except SystemExit as done:
            if done.code:
                raise
    return out.getvalue()


def documented() -> tuple[str, str]:
    """(the page as committed, the page with the table the parser gives now)."""
    text = DOC.read_text()
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return text, f"{head}{START}\n{table()}\n{END}{tail}"


def table() -> str:
    printed = printed_config()
    settings = flatten(yaml.safe_load(printed), keep_classes=True)
    rows = ["| option | in configs/cnn.yaml |", "|---|---|"]
    for key, value in settings.items():
        if key.startswith(SKIPPED) or value is None and key.startswith("trainer."):
            continue
        shown = yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
        rows.append(f"| `{key}` | `{shown}` |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text, new = documented()
    if args.check:
        if new != text:
            sys.exit(
                f"error: {DOC.relative_to(REPO)}'s option table differs from the parser: run python scripts/option_table.py"
            )
        return
    DOC.write_text(new)


if __name__ == "__main__":
    main()
