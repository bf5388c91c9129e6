"""Epoch-matched validation table of the cut-off sweep: python table.py (run in this folder)."""
import csv
from pathlib import Path

runs = sorted(p.parent for p in Path(".").glob("*/metrics.csv"))
print("| run | last epoch in metrics.csv | val acc @10 | val acc @15 | val acc @19 | train loss @19 | s/epoch |")
print("|---|---|---|---|---|---|---|")
for run in runs:
    rows = {int(r["epoch"]): r for r in csv.DictReader(open(run / "metrics.csv"))}
    cell = lambda e, k, f: f.format(float(rows[e][k]) * (100 if k == "val_acc" else 1)) if e in rows and rows[e][k] else "-"
    last = max(rows)
    print(f"| {run.name} | {last} | {cell(10, 'val_acc', '{:.2f}%')} | {cell(15, 'val_acc', '{:.2f}%')} | "
          f"{cell(19, 'val_acc', '{:.2f}%')} | {cell(19, 'train_loss', '{:.3f}')} | {float(rows[last]['epoch_time_s']):.1f} |")
