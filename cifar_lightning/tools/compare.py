"""Compare runs: what each changed against a baseline config, and what it did on validation (never test).

Each argument is a report folder that also holds the run's ``config.yaml``; the table is Markdown."""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

from cifar_lightning.errors import UserError, user_errors
from cifar_lightning.files import read_json, read_text, read_yaml
from cifar_lightning.runs.resume import flatten

# the settings that shape training; callbacks, checkpoints and logging do not
COMPARED = ("seed_everything", "trainer.", "model.", "data.")
# ...except those that name a run or say where files are
IGNORED = (
    "trainer.logger.",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "data.archive",
    "data.data_dir",
    "data.num_workers",
)


def _short(value: object) -> str:
    """Callbacks and other ``class_path`` entries as ``Name(arg=value)``."""
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict) and "class_path" in value:
        args = ", ".join(f"{k}={v}" for k, v in (value.get("init_args") or {}).items() if v is not None)
        return f"{value['class_path'].rsplit('.', 1)[-1]}({args})"
    return str(value)


def _sections(flat: dict[str, object]) -> set[str]:
    """Every dotted key that has keys under it: ``model``, ``model.optimizer``, ..."""
    return {key.rsplit(".", depth)[0] for key in flat for depth in range(1, key.count(".") + 1)}


def changes(config: dict, baseline: dict) -> str:
    ours, base = flatten(config), flatten(baseline)
    our_sections, base_sections = _sections(ours), _sections(base)

    def absent_section(key: str) -> str | None:
        # the shortest part of a baseline key this run's config has nothing under (an older run's
        # config lacks settings added since): model.distillation, not each of its fields. None when
        # this run has the key or a value above it: that shows as itself.
        parts = key.split(".")
        for prefix in (".".join(parts[:end]) for end in range(1, len(parts) + 1)):
            if prefix in ours:
                return None
            if prefix not in our_sections:
                return prefix
        return None

    compared = [key for key in sorted({*ours, *base}) if key.startswith(COMPARED) and not key.startswith(IGNORED)]
    # a section the baseline fills in but this run leaves empty (model.distillation: null) flattens to
    # one key here and to its fields there, so it counts as a change too
    diff = {
        f"{key}={_short(ours[key])}"
        for key in compared
        if key in ours and (ours[key] != base.get(key) or key in base_sections)
    }
    diff |= {f"{section}=(not set)" for key in compared if key not in ours and (section := absent_section(key))}
    return ", ".join(sorted(diff)) or "(baseline)"


def shown(value, spec: str) -> str:
    """A figure as the table shows it; "–" for one the run did not log (a run without validation, say)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return format(number, spec) if math.isfinite(number) else "–"


def row(report_dir: Path, baseline: dict) -> str:
    config = read_yaml(report_dir / "config.yaml", "the run's config")
    rows = list(csv.DictReader(io.StringIO(read_text(report_dir / "metrics.csv", "report table"))))
    summary = read_json(report_dir / "summary.json", "report summary")
    if not isinstance(config, dict) or not isinstance(summary, dict) or not rows:
        raise UserError(
            f"{report_dir} is not a report folder a fit's report wrote (empty or of another shape): pass another"
        )
    last = rows[-1]
    return (
        f"| {report_dir.name} | {changes(config, baseline)} | {len(rows)} | {shown(summary.get('best_val_acc'), '.2%')} "
        f"| {shown(last.get('val_acc'), '.2%')} | {shown(last.get('train_loss'), '.3f')} | {shown(last.get('train_acc'), '.2%')} |"
    )


def table(report_dirs: list[Path], baseline: dict) -> str:
    header = (
        "| run | change against the baseline | epochs | best val acc | final val acc | final train loss | final train acc |\n"
        "|---|---|---|---|---|---|---|"
    )
    return "\n".join([header, *(row(d, baseline) for d in report_dirs)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning compare", description=__doc__.splitlines()[0])
    parser.add_argument("report_dirs", type=Path, nargs="+")
    parser.add_argument("--baseline", type=Path, required=True, help="the config the runs changed")
    args = parser.parse_args(argv)
    with user_errors(False, "cifar-lightning compare"):
        baseline = read_yaml(args.baseline)
        if not isinstance(baseline, dict):
            raise UserError(f"baseline {args.baseline} is not a config (a mapping of settings): pass one from configs/")
        print(table(sorted(args.report_dirs), baseline))


if __name__ == "__main__":
    main()
