"""Regenerate the README's results tables from ``results/*/summary.json``.

    python scripts/results_table.py [--readme README.md] [--results results]

Only the blocks between the marker comments in the README are rewritten. Our rows come from the
summaries the report wrote; the seed's rows are its published figures. A run goes into the
results table only when the shipped config its command named still trains it: the run's
config.yaml and that config, both as the parser fills them in, agree on every setting that
changes training (``runs.resume.training_differences``), except ``data.pipeline``: the two data
pipelines apply the same augmentation from other random draws (docs/data.md; the four runs of
results/fast/NOTES.md), so a run made with the other one stays, its pipeline in the data column.
Any other run goes into the history table, with the settings that differ.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
from pathlib import Path

import yaml

from cifar_lightning.runs.resume import training_differences

START, END = "<!-- results:start -->", "<!-- results:end -->"
HISTORY_START, HISTORY_END = "<!-- history:start -->", "<!-- history:end -->"
# The seed's own published results (../shared/seed-model.md), on the original lossless CIFAR-10.
SEED_PUBLISHED = [
    {"name": "seed (published)", "network": "SeedNet", "parameters": 150_738, "epochs": 37, "test_acc": 0.8519},
    {"name": "seed (published)", "network": "SeedNet", "parameters": 150_738, "epochs": 50, "test_acc": 0.8731},
]
HEADER = (
    "| run | network | parameters | epochs | test acc (views) | single view | first epoch (from 0) val ≥ 85% | fit wall time "
    "| scaled to the yardstick | reference img/s | train img/s | data | precision |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)
RETEST = "retest.json"  # cifar-lightning retest: the single-view figure beside a TTA one
# settings that change a run's random draws but not its recipe: a run differing only in these is still the recipe's
SAME_RECIPE = ("data.pipeline",)


def views_of(s: dict) -> int:
    """How many test-time views a summary's test accuracy averages (1 when it was not tested with more)."""
    return s.get("test_views") or 1


def _fmt(value, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def row_for(name: str, s: dict, single_view: float | None = None, pipeline: str | None = None) -> str:
    machine = s.get("machine") or {}
    archive = (s.get("data") or {}).get("archive") or "torchvision download"
    minutes = None if s.get("fit_wall_time_s") is None else s["fit_wall_time_s"] / 60
    network = (s.get("network") or "?").rsplit(".", 1)[-1]
    count = views_of(s)
    views = {1: " (1 view)", 2: " (2 views: flip)"}.get(count, f" ({count} views)")
    if single_view is None and count == 1:
        single_view = s.get("test_acc")
    return (
        f"| [{name}](results/{name}/) | {network} | {s['parameters']:,} | {s['epochs']} | {_fmt(s.get('test_acc'), '.2%')}{views} "
        f"| {_fmt(single_view, '.2%', 'not measured')} "
        f"| {_fmt(first_epoch_index(s), 'd', 'never' if s.get('best_val_acc') is not None else 'no val')} | {_fmt(minutes, '.1f')} min "
        # the minutes on a machine whose yardstick runs at its committed rate (docs/benchmarks.md); older runs had no yardstick
        f"| {_fmt(s.get('fit_minutes_scaled'), '.1f', 'not measured')}{' min' if s.get('fit_minutes_scaled') is not None else ''} "
        # the machine's speed when the run was made (reference_rate.py), so minutes compare across days
        f"| {_fmt(s.get('reference_images_per_s'), ',.0f', 'not measured')} "
        f"| {_fmt(s.get('train_images_per_sec'), ',.0f')} | {Path(archive).name}{f' ({pipeline} pipeline)' if pipeline else ''} "
        f"| {machine.get('precision', '?')} |"
    )


def first_epoch_index(s: dict) -> int | None:
    """The first epoch, numbered from 0, whose validation reached 85%."""
    return s.get("first_epoch_val_acc_ge_85")


def single_view_of(run_dir: Path) -> float | None:
    """The run's single-view test accuracy: logged by its test (summary.json), else re-tested (retest.json)."""
    summary = run_dir / "summary.json"
    logged = json.loads(summary.read_text()).get("test_acc_single_view") if summary.is_file() else None
    if logged is not None:
        return logged
    path = run_dir / RETEST
    return json.loads(path.read_text()).get("test_acc_single_view") if path.is_file() else None


def parsed(config: Path) -> dict:
    """A config as ``cifar-lightning fit --config CONFIG --print_config`` fills it in."""
    from cifar_lightning.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["fit", "--config", str(config), "--print_config"])
        except SystemExit as done:
            if done.code:
                raise
    return yaml.safe_load(out.getvalue())


def shipped_config(summary: dict, repo: Path) -> Path | None:
    """The shipped config (configs/*.yaml) the run's fit command named."""
    words = shlex.split(summary.get("command") or "")
    named = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--config"]
    return next((repo / c for c in named if c.startswith("configs/") and (repo / c).is_file()), None)


def differences(run_dir: Path, summary: dict, repo: Path) -> list[str]:
    """The training settings in which the run differs from the shipped config it names (all, if it names none)."""
    config = shipped_config(summary, repo)
    if config is None:
        return ["no shipped config named in its command"]
    return training_differences(parsed(run_dir / "config.yaml"), parsed(config))


def runs(results: Path, repo: Path) -> tuple[list[str], list[str]]:
    """(rows of runs a shipped config reproduces, rows of the others with what differs)."""
    current, history = [], []
    for path in sorted(results.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        differ = differences(path.parent, summary, repo)
        pipeline = None
        if "data.pipeline" in differ:
            pipeline = (yaml.safe_load((path.parent / "config.yaml").read_text()).get("data") or {}).get("pipeline")
        differ = [d for d in differ if d not in SAME_RECIPE]
        row = row_for(path.parent.name, summary, single_view_of(path.parent), pipeline)
        if differ:
            shown = ", ".join(differ[:6]) + (f" and {len(differ) - 6} more" if len(differ) > 6 else "")
            history.append(f"{row} {shown} |")
        else:
            current.append(row)
    return current, history


def table(rows: list[str]) -> str:
    rows = list(rows)
    rows += [
        f"| {r['name']} | {r['network']} | {r['parameters']:,} | {r['epochs']} | {r['test_acc']:.2%} | {r['test_acc']:.2%} | – | – | – | – | – "
        "| original CIFAR-10 (lossless) | not stated |"
        for r in SEED_PUBLISHED
    ]
    return "\n".join([HEADER, *rows])


def history_table(rows: list[str]) -> str:
    header, rule = HEADER.split("\n")
    return "\n".join([f"{header} differs from today's config in |", f"{rule}---|", *rows])


def fill(text: str, start: str, end: str, block: str, readme: Path) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"error: {readme} has no {start} ... {end} block to fill")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python scripts/results_table.py", description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="the checkout whose configs/ the runs are compared with"
    )
    args = parser.parse_args(argv)
    current, history = runs(args.results, args.repo)
    text = fill(args.readme.read_text(), START, END, table(current), args.readme)
    text = fill(text, HISTORY_START, HISTORY_END, history_table(history), args.readme)
    args.readme.write_text(text)


if __name__ == "__main__":
    main()
