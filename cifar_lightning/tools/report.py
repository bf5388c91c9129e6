"""What did a run achieve? Reads a run folder and writes metrics.csv, summary.json and curves.png.

From what the run wrote: its event files (or a CSVLogger's metrics.csv, then into ``report/``), ``run.json``,
``test_confusion_matrix.csv`` and the checkpoints.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cifar_lightning.errors import UserError, user_errors  # noqa: E402
from cifar_lightning.files import is_regular, read_json, write_atomically  # noqa: E402
from cifar_lightning.runs.checkpoints import read_checkpoint  # noqa: E402

VAL_TARGET = 0.85  # the seed's headline: first epoch with validation accuracy at or above this
COLUMNS = ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "wall_time_s", "epoch_time_s"]


LOGGER_CSV = "metrics.csv"  # CSVLogger's file name, and the report's own


def is_logger_csv(path: Path) -> bool:
    """A CSVLogger's metrics.csv (a column for each logged tag, "train/loss_step"...), not a report's table of epochs."""
    if not path.is_file():
        return False
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    return "step" in header and any("/" in column for column in header)


def read_scalars(run_dir: Path, started: float | None = None) -> dict[str, list[tuple[float, int, float]]]:
    """tag -> [(wall_time, step, value)] over all event files (else a CSVLogger's), last write per step wins."""
    events = sorted(p for p in run_dir.glob("events.out.tfevents.*") if is_regular(p))  # a FIFO would block the reader
    if not events and is_logger_csv(run_dir / LOGGER_CSV):
        return read_csv_scalars(run_dir / LOGGER_CSV, started or 0.0)
    if not events:
        raise UserError(
            f"no TensorBoard event files or CSVLogger {LOGGER_CSV} in {run_dir}: pass a lightning_logs/version_N folder"
        )
    merged: dict[str, dict[int, tuple[float, int, float]]] = {}
    for path in events:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                merged.setdefault(tag, {})[e.step] = (e.wall_time, e.step, e.value)
    return {tag: sorted(points.values(), key=lambda p: p[1]) for tag, points in merged.items()}


def read_csv_scalars(path: Path, started: float) -> dict[str, list[tuple[float, int, float]]]:
    """A CSVLogger's rows as ``read_scalars`` returns them; a resumed run's repeated steps, last row wins."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    epoch_seconds: dict[int, float] = {}
    for row in rows:
        if row.get("time/epoch_s") and row.get("epoch"):
            epoch_seconds[int(float(row["epoch"]))] = float(row["time/epoch_s"])
    elapsed, clock = 0.0, {}
    for epoch in range(max(epoch_seconds, default=-1) + 1):
        elapsed += epoch_seconds.get(epoch, 0.0)
        clock[epoch] = started + elapsed
    merged: dict[str, dict[int, tuple[float, int, float]]] = {}
    for row in rows:
        step = int(float(row["step"]))
        epoch = int(float(row["epoch"])) if row.get("epoch") else None
        wall = clock.get(epoch, started + elapsed) if epoch is not None else started
        for tag, value in row.items():
            if tag != "step" and value not in (None, ""):
                merged.setdefault(tag, {})[step] = (wall, step, float(value))
    return {tag: sorted(points.values(), key=lambda p: p[1]) for tag, points in merged.items()}


def epoch_rows(scalars: dict, started: float | None = None) -> list[dict]:
    """One row per finished epoch, wall time from ``started`` (run.json's) or else the first logged step."""
    epoch_of = {step: int(value) for _, step, value in scalars.get("epoch", [])}
    rows: dict[int, dict] = {}
    for tag, column in (
        ("train/loss_epoch", "train_loss"),
        ("train/acc", "train_acc"),
        ("val/loss", "val_loss"),
        ("val/acc", "val_acc"),
    ):
        for wall, step, value in scalars.get(tag, []):
            epoch = epoch_of.get(step)
            if epoch is None:
                continue
            row = rows.setdefault(epoch, {"epoch": epoch, "step": step, "wall": wall})
            row[column] = value
            row["step"], row["wall"] = max(row["step"], step), max(row["wall"], wall)
    lrs = scalars.get("lr", [])
    train_points = scalars.get("train/loss_step", []) + lrs
    start = started or min((w for w, _, _ in train_points), default=None)
    previous = start
    for epoch in sorted(rows):
        row = rows[epoch]
        row["lr"] = next((v for _, s, v in reversed(lrs) if s <= row["step"]), None)
        row["wall_time_s"] = row["wall"] - start if start is not None else None
        row["epoch_time_s"] = row["wall"] - previous if previous is not None else None
        previous = row["wall"]
    return [{c: rows[e].get(c) for c in COLUMNS} for e in sorted(rows)]


def checkpoint_facts(run_dir: Path) -> dict:
    ckpts = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    facts: dict = {"checkpoints": [str(p) for p in ckpts]}
    for path in ckpts:
        checkpoint = read_checkpoint(path)
        facts.setdefault("parameters", checkpoint.get("network_parameters"))
        facts.setdefault("network", checkpoint.get("network_class"))
    return facts


def read_confusion(run_dir: Path) -> dict | None:
    path = run_dir / "test_confusion_matrix.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        header, *body = list(csv.reader(f))
    names = header[1:]
    matrix = [[int(v) for v in row[1:]] for row in body]
    per_class = {n: row[i] / max(sum(row), 1) for i, (n, row) in enumerate(zip(names, matrix))}
    return {"classes": names, "matrix": matrix, "per_class_accuracy": per_class}


def read_test_views(scalars: dict) -> int | None:
    """How many test-time views ``test`` averaged, as it logged them (``test/views``); None if untested."""
    return int(scalars["test/views"][-1][2]) if "test/views" in scalars else None


def median_value(points: list[tuple[float, int, float]]) -> float | None:
    return statistics.median(v for _, _, v in points) if points else None


def read_run_info(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    info = read_json(path, "the run's record") if path.is_file() else {}
    return info if isinstance(info, dict) else {}


# the summary's figures that are shares: a value outside [0, 1] was not written by this project
SHARES = ("best_val_acc", "final_val_acc", "test_acc", "test_acc_single_view")


def check_summary(summary: dict, run_dir: Path) -> None:
    """Every figure finite, every accuracy a share: what the report writes is valid JSON and means what it says."""
    for key, value in summary.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(
                f"{run_dir} logged {key} = {value}: a diverged or edited run; report a run whose figures are finite"
            )
        if key in SHARES and value is not None and not 0.0 <= value <= 1.0:
            raise UserError(
                f"{run_dir} logged {key} = {value}, not an accuracy in [0, 1]: the record was edited; pass a run a fit wrote"
            )


def summarize(run_dir: Path, rows: list[dict], scalars: dict) -> dict:
    info = read_run_info(run_dir)
    facts = checkpoint_facts(run_dir)
    val = [r for r in rows if r["val_acc"] is not None]
    best = max(val, key=lambda r: r["val_acc"], default=None)
    # epochs are numbered from 0 everywhere, as Lightning numbers them (checkpoint names, metrics.csv,
    # its progress bar); "epochs" is a count.
    crossed = next((r["epoch"] for r in val if r["val_acc"] >= VAL_TARGET), None)
    test = scalars.get("test/acc")
    wall = rows[-1]["wall_time_s"] if rows else None
    views = read_test_views(scalars)
    return {
        "run_dir": str(run_dir),
        "network": facts.get("network"),
        "parameters": facts.get("parameters") or info.get("parameters"),
        "epochs": len(rows),
        "best_val_acc": best["val_acc"] if best else None,
        "epoch_numbering": "from 0",
        "best_val_epoch": best["epoch"] if best else None,
        "final_val_acc": val[-1]["val_acc"] if val else None,
        "test_acc": test[-1][2] if test else None,
        # with test-time views, the same checkpoint one view per image (logged by test)
        "test_acc_single_view": (
            scalars["test/acc_single_view"][-1][2]
            if "test/acc_single_view" in scalars
            else test[-1][2]
            if test and views == 1
            else None
        ),
        "first_epoch_val_acc_ge_85": crossed,
        "fit_wall_time_s": wall,
        "seconds_per_epoch": wall / len(rows) if rows and wall else None,
        # training images/s while stepping (SpeedMonitor's ThroughputMonitor; median over the run)
        "train_images_per_sec": median_value(scalars.get("train/device/samples_per_sec", [])),
        "test_views": views,  # 1: single view; 2: with the mirror image; 6: also shifted (model.tta)
        "test_per_class": read_confusion(run_dir),
        "command": info.get("command"),
        "commit": info.get("commit"),
        "commit_dirty": info.get("commit_dirty"),
        "torch": info.get("torch"),
        "lightning": info.get("lightning"),
        "data": info.get("data"),
        "machine": info.get("machine"),
        # unpacking, decoding and the split, before the fit's clock starts (not in fit_wall_time_s)
        "data_preparation_s": info.get("data_preparation_s"),
        "fit_minutes": wall / 60 if wall else None,
        "checkpoints": facts["checkpoints"],
    }


def plot(rows: list[dict], scalars: dict, path: Path, title: str) -> None:
    epochs = [r["epoch"] for r in rows]
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, label in ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "acc", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            points = [(e, r[f"{split}_{key}"]) for e, r in zip(epochs, rows) if r[f"{split}_{key}"] is not None]
            if points:  # a run with data.val_size 0 has no validation curve
                ax.plot(*zip(*points), style, label=split)
        ax.set(xlabel="epoch (from 0)", ylabel=label, title=label)
        ax.grid(alpha=0.3)
        ax.legend()
    acc_ax.axhline(VAL_TARGET, color="grey", lw=0.8, ls=":")
    steps = [s for _, s, _ in scalars.get("lr", [])]
    lr_ax.plot(steps, [v for _, _, v in scalars.get("lr", [])])
    lr_ax.set(xlabel="optimizer step", ylabel="learning rate", title="learning rate (OneCycle)")
    lr_ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def default_out(run_dir: Path) -> Path:
    """The run folder, or its report/ where a CSVLogger's metrics.csv is."""
    return run_dir / "report" if is_logger_csv(run_dir / LOGGER_CSV) else run_dir


OUTPUTS = (LOGGER_CSV, "summary.json", "curves.png")
MARK = ".report"  # beside a report's files: --overwrite replaces those files only where it is


def read_run(run_dir: Path) -> tuple[list[dict], dict, dict]:
    """The run folder's epochs, scalars and summary; a record this project did not write is one line."""
    try:
        starts = read_run_info(run_dir).get("starts") or [{}]
        started = starts[0].get("started") if isinstance(starts, list) and isinstance(starts[0], dict) else None
        started = started if isinstance(started, (int, float)) else None
        scalars = read_scalars(run_dir, started)
        rows = epoch_rows(scalars, started)
        if not rows:
            raise UserError(
                f"{run_dir} holds no epoch a fit logged (its records are empty or not Lightning's): pass a folder a fit wrote"
            )
        summary = summarize(run_dir, rows, scalars)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, csv.Error, UnicodeDecodeError) as err:
        first = " ".join(str(err).split())[:160]
        raise UserError(
            f"{run_dir} holds a record this project did not write ({type(err).__name__}: {first}): pass a folder a fit wrote"
        ) from None
    check_summary(summary, run_dir)
    return rows, scalars, summary


def write_report(run_dir: Path, out_dir: Path | None = None, overwrite: bool = False) -> dict:
    out_dir = out_dir or default_out(run_dir)
    if is_logger_csv(out_dir / LOGGER_CSV):
        raise UserError(f"{out_dir / LOGGER_CSV} is a logger's record, not a report: pass another --out")
    existing = [name for name in OUTPUTS if (out_dir / name).exists() or (out_dir / name).is_symlink()]
    if existing and not overwrite:
        raise UserError(
            f"{out_dir} already holds a report ({', '.join(existing)}): pass --overwrite to replace it, or another --out"
        )
    if existing and not (out_dir / MARK).is_file():  # only files an earlier report marked as its own are replaced
        raise UserError(
            f"{out_dir} holds {', '.join(existing)}, which no earlier report of this project wrote: --overwrite "
            "replaces only a report's own files; pass another --out"
        )
    rows, scalars, summary = read_run(run_dir)

    def metrics(path: Path) -> None:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(out_dir / LOGGER_CSV, metrics)
    text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    write_atomically(out_dir / "summary.json", lambda path: path.write_text(text))
    test = f", test {summary['test_acc']:.2%}" if summary["test_acc"] is not None else ""
    params = f" ({summary['parameters']:,} parameters)" if summary["parameters"] else ""
    title = f"{summary['network'] or run_dir.name}{params}{test}"
    write_atomically(out_dir / "curves.png", lambda path: plot(rows, scalars, path, title))
    write_atomically(
        out_dir / MARK, lambda path: path.write_text(f"{', '.join(OUTPUTS)}: written by cifar-lightning report\n")
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a lightning_logs/version_N folder")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the report (default: the run folder; its report/ when a CSVLogger keeps it)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in the output folder")
    args = parser.parse_args(argv)
    with user_errors(False, "cifar-lightning report"):
        if not args.run_dir.is_dir():
            raise UserError(f"{args.run_dir} is not a folder: pass a lightning_logs/version_N folder")
        summary = write_report(args.run_dir, args.out, args.overwrite)
    keys = (
        "parameters",
        "epochs",
        "best_val_acc",
        "best_val_epoch",
        "test_acc",
        "first_epoch_val_acc_ge_85",
        "fit_wall_time_s",
    )
    for key in keys:
        print(f"{key:>28}: {summary[key]}")
    print(f"{'written to':>28}: {args.out or default_out(args.run_dir)}")


if __name__ == "__main__":
    main()
