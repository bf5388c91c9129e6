"""Training throughput, three ways, on the same data and network: the data pipeline alone, a
minimal plain-PyTorch loop on ready-made batches, and ``fit`` through the project (its data
pipeline, Lightning, the config's callbacks).

    python -m benchmarks.throughput [--config configs/cnn.yaml] [--variant NAME "OVERRIDES"]... [--out results/bench.md]

Each variant is the config plus CLI overrides (``--variant bf16 "--trainer.precision bf16-mixed"``);
without ``--variant`` the config alone is measured. For every variant and repeat, the three
measurements run back to back; each times ``--steps`` batches after ``--warmup`` untimed ones.
The report gives the median images/s of the repeats, their range, Lightning's overhead against
the plain loop, and how many times the training rate the pipeline delivers. It writes the
Markdown table and the provenance (command, commit, machine, data copy) to ``--out``.

The overhead is paired, because this 2-core VM drifts by about ±8% between runs minutes apart,
more than the effect measured: each repeat times the plain loop and ``fit`` next to each other,
in alternating order (plain, fit, then fit, plain: an ABBA design, so a steady drift or a
second-in-line effect favours neither), and the overhead is the median over repeats of that
repeat's own ratio, not a ratio of medians taken minutes apart.

The plain loop does the same arithmetic per step as the project's ``training_step``: forward,
cross-entropy (with the config's label smoothing), backward, the optimizer and OneCycle step,
a torchmetrics accuracy update, and the EMA update when the config has EMAWithWarmup. Its
batches are ready-made: eight normalised batches of training images on the training device,
cycled, with no augmentation and no loader. So ``fit / plain`` is the share of the network's own
speed that the project keeps after its data pipeline, Lightning's loop and the callbacks.
Compare the two data pipelines with ``--variant device "--data.pipeline device" --variant
albumentations "--data.pipeline albumentations"``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from lightning.pytorch import Callback
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics.classification import MulticlassAccuracy

from cifar_lightning.callbacks.ema import EMAWithWarmup, update_average, warmed_up_decay
from cifar_lightning.data.device_batches import DeviceSplit
from cifar_lightning.lightning_cli import build
from cifar_lightning.runs.provenance import commit_label, cpu_model, data_copy, gpu_model

KINDS = ("pipeline", "plain", "fit")
# settings that change speed on a 2-core CPU, each against the config (configs/cnn.yaml: fp32,
# channels_last, batch 128, one loader worker); "naive" is PyTorch's defaults
GRID = [
    ("naive", "--model.channels_last false --data.num_workers 0"),
    ("config", ""),
    ("workers-0", "--data.num_workers 0"),
    ("workers-2", "--data.num_workers 2"),
    ("bf16", "--trainer.precision bf16-mixed"),
    ("batch-256", "--data.batch_size 256"),
    ("batch-512", "--data.batch_size 512"),
    ("bf16-batch-512", "--trainer.precision bf16-mixed --data.batch_size 512"),
]


class StepTimer(Callback):
    """Times batches ``warmup`` .. ``warmup + steps - 1`` of the first epoch, start to end."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.images = 0
        self.started = self.ended = self.fit_started = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.fit_started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            _synchronize(pl_module.device)
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx >= self.warmup:
            self.images += len(batch[0])
        if batch_idx == self.warmup + self.steps - 1:
            _synchronize(pl_module.device)
            self.ended = time.perf_counter()

    def rate(self) -> float:
        return self.images / (self.ended - self.started)

    def warmup_seconds(self) -> float:
        """From the first training batch to the first timed one: where a compiled network waits for the compiler."""
        return self.started - self.fit_started


def _synchronize(device: torch.device | None) -> None:
    """Wait for queued GPU work, so that a host clock reads finished steps."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_batches(loader, warmup: int, steps: int, work, device: torch.device | None = None) -> float:
    """Images per second over ``steps`` batches after ``warmup``, with ``work(batch)`` per batch."""
    images, started = 0, None
    for index, batch in enumerate(loader):
        if index == warmup:
            _synchronize(device)
            started = time.perf_counter()
        work(batch)
        if index >= warmup:
            images += len(batch[0])
        if index == warmup + steps - 1:
            _synchronize(device)
            return images / (time.perf_counter() - started)
    raise SystemExit(f"error: the loader ran out after {index + 1} batches: lower --warmup/--steps")


REFERENCE_BATCH = 128  # --steps and --warmup count batches of this size; other sizes time as many images
READY_BATCHES = (
    8  # the plain loop's batches, cycled: few enough to stay in memory, enough that BatchNorm sees varied statistics
)


def measure(kind: str, config: str, overrides: list[str], warmup: int, steps: int, log_dir: str) -> float:
    limits = [
        "--trainer.max_epochs=1",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={log_dir}",
    ]
    cli = build(config, [*overrides, *limits])
    model, datamodule, trainer = cli.model, cli.datamodule, cli.trainer
    batch = datamodule.batch_size
    warmup, steps = max(2, warmup * REFERENCE_BATCH // batch), max(5, steps * REFERENCE_BATCH // batch)
    trainer.limit_train_batches = warmup + steps  # known only once the variant's batch size is
    if kind == "fit":
        timer = StepTimer(warmup, steps)
        trainer.callbacks.append(timer)
        trainer.fit(model, datamodule=datamodule)
        print(f"  fit: the {warmup} untimed batches took {timer.warmup_seconds():.1f} s", flush=True)
        return timer.rate()

    datamodule.prepare_data()
    datamodule.setup("fit")
    device = trainer.strategy.root_device  # the Trainer's choice of accelerator, e.g. cuda:0
    if kind == "pipeline":
        return _timed_batches(datamodule.train_dataloader(), warmup, steps, lambda batch: None)

    # the plain loop: what training_step and Lightning's loop do, by hand, on ready-made batches
    train = datamodule.train_set
    ready = DeviceSplit(
        train.images[: READY_BATCHES * batch],
        train.labels[: READY_BATCHES * batch],
        datamodule.mean,
        datamodule.std,
        device,
    )
    batches = [ready.batch(torch.arange(i * batch, (i + 1) * batch, device=device)) for i in range(READY_BATCHES)]
    loader = itertools.islice(itertools.cycle(batches), warmup + steps)
    hp = model.hparams
    model.to(device).train()
    optimizer = model.optimizer_factory(model.parameters())
    scheduler = OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=warmup + steps,
        pct_start=hp.pct_start,
        div_factor=hp.div_factor,
        final_div_factor=hp.final_div_factor,
    )
    accuracy = MulticlassAccuracy(hp.num_classes, average="micro").to(device)
    ema = next((c for c in trainer.callbacks if isinstance(c, EMAWithWarmup)), None)
    # the same average the callback keeps: every step, buffers included, the warmed-up decay
    averaged = copy.deepcopy(model) if ema else None
    updates = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if "bf16" in str(trainer.precision) else nullcontext()

    def step(batch) -> None:
        images, labels = (tensor.to(device, non_blocking=True) for tensor in batch)
        with autocast:
            logits = model(images)
            loss = model.criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        accuracy.update(logits.detach(), labels)
        if averaged is not None:
            nonlocal updates
            update_average(averaged, model, warmed_up_decay(ema.decay, updates))
            updates += 1

    return _timed_batches(loader, warmup, steps, step, device)


def kinds_in_order(repeat: int) -> tuple[str, ...]:
    """The measurements of one repeat: the pipeline, then plain and fit, swapped on every other repeat (ABBA)."""
    return ("pipeline", "plain", "fit") if repeat % 2 == 0 else ("pipeline", "fit", "plain")


def paired_ratios(plain: list[float], fit: list[float]) -> list[float]:
    """Per repeat, a fit's rate over the plain loop's rate timed beside it."""
    return [f / p for p, f in zip(plain, fit, strict=True)]


def report(results: dict, args, overrides: dict, data: dict) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"

    lines = [
        "# Training throughput: data pipeline, plain PyTorch loop, and fit through the project",
        "",
        f"Written by `{' '.join(['python -m benchmarks.throughput', *sys.argv[1:]])}`",
        f"(commit {commit_label()};"
        f" torch {torch.__version__}, {torch.get_num_threads()} threads; CPU: {cpu_model()}; GPU: {gpu_model() or 'none'};"
        f" data: {Path(data.get('archive') or data.get('data_dir')).name}).",
        f"Images per second over {args.steps * REFERENCE_BATCH:,} images after {args.warmup * REFERENCE_BATCH:,} untimed ones "
        f"(as batches of the variant's size); median of {args.repeats} repeats (range).",
        "",
        "| variant | overrides | data pipeline | plain loop | fit (project) | fit / plain, paired | pipeline / fit |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        ratios = paired_ratios(runs["plain"], runs["fit"])
        pipe, fit = statistics.median(runs["pipeline"]), statistics.median(runs["fit"])
        lines.append(
            f"| {name} | `{' '.join(overrides[name]) or '(config as is)'}` | {cell(runs['pipeline'])} | {cell(runs['plain'])} | "
            f"{cell(runs['fit'])} | {statistics.median(ratios):.2f} ({min(ratios):.2f} to {max(ratios):.2f}) | {pipe / fit:.2f}x |"
        )
    lines += [
        "",
        "fit / plain: a fit's rate over the plain loop's rate timed beside it, per repeat; the median of the "
        "repeats (their range). Plain and fit alternate which runs first (ABBA), so drift between the two "
        "cancels over the repeats. The plain loop trains on ready-made batches: the ratio is the share of the "
        "network's own speed that the data pipeline, Lightning's loop and the callbacks leave.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cnn.yaml")
    parser.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), default=[])
    parser.add_argument("--grid", action="store_true", help="the settings grid (GRID) instead of --variant")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches first")
    parser.add_argument(
        "--steps",
        type=int,
        default=150,
        help="timed batches of 128 images (fewer: the 2-core VM's own drift, about ±10%%, dominates)",
    )
    parser.add_argument("--repeats", type=int, default=8, help="an even number balances the ABBA order")
    parser.add_argument("--out", default="results/bench.md")
    args, common = parser.parse_known_args(argv)
    chosen = GRID if args.grid else args.variant
    variants = {name: [*common, *extra.split()] for name, extra in chosen} or {"config": common}
    results = {name: {k: [] for k in KINDS} for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as log_dir:
        for repeat in range(args.repeats):
            for name, overrides in variants.items():
                for kind in kinds_in_order(repeat):
                    rate = measure(kind, args.config, overrides, args.warmup, args.steps, log_dir)
                    results[name][kind].append(rate)
                    print(f"repeat {repeat + 1}/{args.repeats} {name:>12} {kind:>8}: {rate:8.0f} img/s", flush=True)
        data = data_copy(build(args.config, common).datamodule)
    text = report(results, args, variants, data)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
