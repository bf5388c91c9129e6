"""Regenerate the README's table of the shipped recipes from ``results/<recipe>/summary*.json``.

    python scripts/results_table.py [--readme README.md] [--results results] [--repo .]

One row per recipe, in ``RECIPES``' order; its purpose is the first line of ``configs/<recipe>.yaml``.
``summary.json`` is the recipe's headline run and ``summary-s<seed>.json`` its other seeds, each
written by ``cifar-lightning report``; a figure over several seeds is their mean and standard
deviation, and the fit minutes their median. The headline run's ``config.yaml`` must train as the shipped config does, setting for
setting, or the script stops: every figure in the table comes from a config that ships.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import statistics
from pathlib import Path

import yaml

from cifar_lightning.runs.resume import training_differences

START, END = "<!-- results:start -->", "<!-- results:end -->"
RECIPES = ["cnn", "sprint", "fast", "hour"]  # by purpose: the assignment's, then fastest to most accurate
HEADER = (
    "| recipe | for | network | parameters | epochs | seeds | test accuracy, single view | with test-time views | fit minutes |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def parsed(config: Path) -> dict:
    """A config as ``cifar-lightning fit --config CONFIG --print_config`` fills it in."""
    return parsed_text(config.read_text())


@functools.cache
def parsed_text(text: str) -> dict:
    """A run's copy of a shipped config is parsed once, with it."""
    from cifar_lightning.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["fit", "--config", text, "--print_config"])
        except SystemExit as done:
            if done.code:
                raise
    return yaml.safe_load(out.getvalue())


def purpose(config: Path) -> str:
    """The config's first line, less its "# The <name>: " lead."""
    first = config.read_text().splitlines()[0].lstrip("# ")
    return first.split(": ", 1)[-1].rstrip(".")


def spread(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    """One value, or the mean ± standard deviation of several."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0] * scale:.2f}{unit}"
    return f"{statistics.mean(values) * scale:.2f}{unit} ± {statistics.stdev(values) * scale:.2f}"


def row(recipe: str, results: Path, repo: Path) -> str:
    folder, config = results / recipe, repo / "configs" / f"{recipe}.yaml"
    differ = training_differences(parsed(folder / "config.yaml"), parsed(config))
    if differ:
        raise SystemExit(
            f"error: {folder}/config.yaml is not how configs/{recipe}.yaml trains ({', '.join(differ[:5])}): run it again"
        )
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("summary*.json"))]
    head = json.loads((folder / "summary.json").read_text())
    views = {s.get("test_views") or 1 for s in runs}
    single = [s.get("test_acc_single_view") or s["test_acc"] for s in runs]
    with_views = [s["test_acc"] for s in runs] if views != {1} else []
    # the median: one seed's fit that shared the machine does not move it (the NOTES say which)
    timed = [s["fit_minutes"] for s in runs if s.get("fit_minutes") is not None]
    minutes = f"{statistics.median(timed):.1f}" if timed else "–"
    machine = head.get("machine") or {}
    cpu = " ".join(machine.get("cpu", "?").replace("(R)", "").split()[:3])
    where = "GPU" if machine.get("gpu") else f"{machine.get('cpu_count', '?')}-core {cpu}"
    shown = f"{spread(with_views, 100, '%')} ({views.pop()} views)" if with_views else "–"
    return (
        f"| [{recipe}](results/{recipe}/) | {purpose(config)} | {head['network'].rsplit('.', 1)[-1]} | {head['parameters']:,} "
        f"| {head['epochs']} | {len(runs)} | {spread(single, 100, '%')} | {shown} | {minutes} on a {where} |"
    )


def table(results: Path, repo: Path) -> str:
    return "\n".join([HEADER, *(row(recipe, results, repo) for recipe in RECIPES)])


def fill(text: str, block: str, readme: Path) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"error: {readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{block}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python scripts/results_table.py", description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="the checkout whose configs/ the runs are compared with"
    )
    args = parser.parse_args(argv)
    args.readme.write_text(fill(args.readme.read_text(), table(args.results, args.repo), args.readme))


if __name__ == "__main__":
    main()
