"""What horizontal flips cost on images whose mirror means something else: scikit-learn's 1,797 handwritten
digits (8 x 8) as an image folder, 80/20 split, the fast recipe with and without configs/data/no-flips.yaml.

    python -m benchmarks.digits_flips [--out results/digits-flips.md] [--seeds 42]

Each run is a real ``fit`` then ``test`` through the command line, in a temporary folder; the table gives
the test accuracy each printed. Needs scikit-learn (its bundled copy of the digits: no download).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_lightning.runs.provenance import commit_label, cpu_model

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "fast.yaml as shipped": [],
    "fast.yaml + data/no-flips.yaml": ["--config", str(REPO / "configs" / "data" / "no-flips.yaml")],
}


def digits_folder(root: Path) -> Path:
    """``root/{train,test}/<digit>/NNNN.png``: 8 x 8 grayscale, an 80/20 split drawn with seed 0."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    cut = int(0.8 * len(order))
    for split, indices in (("train", order[:cut]), ("test", order[cut:])):
        for n, i in enumerate(indices):
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[i] * 255 / 16).round().astype(np.uint8)  # 0-16 grey levels
            Image.fromarray(pixels, "L").save(folder / f"{n:04d}.png")
    return root


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "cifar_lightning", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(args[:3])} failed: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "digits-flips.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = digits_folder(Path(tmp) / "digits")
        for name, extra in VARIANTS.items():
            for seed in args.seeds:
                work = Path(tmp) / f"run-{len(rows)}"
                work.mkdir()
                common = [*extra, f"--data.data_dir={data}", f"--data.cache_dir={Path(tmp) / 'cache'}"]
                fit = ["fit", "--config", str(REPO / "configs" / "fast.yaml"), *common, f"--seed_everything={seed}"]
                run(fit, work)
                (version,) = (work / "lightning_logs").glob("version_*")
                config, checkpoint = version / "config.yaml", version / "checkpoints" / "last.ckpt"
                run(["test", "--config", str(config), "--ckpt_path", str(checkpoint)], work)
                test_acc = read_test_acc(version)
                rows.append((name, seed, test_acc))
                print(f"{name}, seed {seed}: test {test_acc:.2%}", flush=True)
    lines = [
        "# Flips on handwritten digits",
        "",
        f"`python -m benchmarks.digits_flips --seeds {' '.join(map(str, args.seeds))}` at {commit_label()}, on "
        f"{cpu_model()}: scikit-learn's 1,797 digits (8 x 8, read at 32), 1,437 train (144 of them held out for "
        "validation) and 360 test images, the fast recipe (15 epochs).",
        "",
        "| recipe | seed | test accuracy |",
        "|---|---|---|",
        *(f"| {name} | {seed} | {acc:.2%} |" for name, seed, acc in rows),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


def read_test_acc(version: Path) -> float:
    """The test accuracy the ``test`` command logged into the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in version.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "test/acc" in accumulator.Tags().get("scalars", []):
            values += [e.value for e in accumulator.Scalars("test/acc")]
    if not values:
        raise SystemExit(f"error: no test/acc in {version}")
    return values[-1]


if __name__ == "__main__":
    main()
