"""Regenerate the README's results table from ``results/*/summary.json``.

    python scripts/results_table.py [--readme README.md] [--results results]

Only the block between the two marker comments in the README is rewritten. Our rows come
from the summaries the report wrote; the seed's rows are its published figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
# The seed's own published results (../shared/seed-model.md), on the original lossless CIFAR-10.
SEED_PUBLISHED = [
    {"name": "seed (published)", "network": "SeedNet", "parameters": 150_738, "epochs": 37, "test_acc": 0.8519},
    {"name": "seed (published)", "network": "SeedNet", "parameters": 150_738, "epochs": 50, "test_acc": 0.8731},
]
HEADER = (
    "| run | network | parameters | epochs | test acc (views) | single view | first epoch (from 0) val ≥ 85% | fit wall time "
    "| reference img/s | train img/s | data | precision |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)
RETEST = "retest.json"  # cifar-lightning retest: the single-view figure beside a TTA one


def views_of(s: dict) -> int:
    """How many test-time views a summary's test accuracy averages (1 when it was not tested with more)."""
    return s.get("test_views") or 1


def _fmt(value, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def row_for(name: str, s: dict, single_view: float | None = None) -> str:
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
        # the machine's speed when the run was made (reference_rate.py), so minutes compare across days
        f"| {_fmt(s.get('reference_images_per_s'), ',.0f', 'not measured')} "
        f"| {_fmt(s.get('train_images_per_sec'), ',.0f')} | {Path(archive).name} | {machine.get('precision', '?')} |"
    )


def first_epoch_index(s: dict) -> int | None:
    """The first epoch, numbered from 0, whose validation reached 85% (``cifar-lightning upgrade`` renumbers older summaries)."""
    return s.get("first_epoch_val_acc_ge_85")


def single_view_of(run_dir: Path) -> float | None:
    """The run's single-view test accuracy: logged by its test (summary.json), else re-tested (retest.json)."""
    summary = run_dir / "summary.json"
    logged = json.loads(summary.read_text()).get("test_acc_single_view") if summary.is_file() else None
    if logged is not None:
        return logged
    path = run_dir / RETEST
    return json.loads(path.read_text()).get("test_acc_single_view") if path.is_file() else None


def table(results: Path) -> str:
    rows = [row_for(p.parent.name, json.loads(p.read_text()), single_view_of(p.parent)) for p in sorted(results.glob("*/summary.json"))]
    rows += [
        f"| {r['name']} | {r['network']} | {r['parameters']:,} | {r['epochs']} | {r['test_acc']:.2%} | {r['test_acc']:.2%} | – | – | – | – "
        "| original CIFAR-10 (lossless) | not stated |"
        for r in SEED_PUBLISHED
    ]
    return "\n".join([HEADER, *rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python scripts/results_table.py", description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"error: {args.readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n{table(args.results)}\n{END}{tail}")


if __name__ == "__main__":
    main()
