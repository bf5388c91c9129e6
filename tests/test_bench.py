"""The throughput benchmark runs end to end and writes its report (speed itself is not asserted)."""

from __future__ import annotations

import pytest

from harness import REPO, data_args


@pytest.mark.slow
def test_bench_writes_a_table_for_each_variant(tmp_path, real_data_dir, real_archive, monkeypatch):
    from benchmarks.throughput import main

    out = tmp_path / "bench.md"
    monkeypatch.chdir(REPO)  # it names configs/ relative to the checkout
    main(
        [
            "--steps",
            "6",
            "--warmup",
            "2",
            "--repeats",
            "1",
            "--variant",
            "device",
            "--data.pipeline device",
            "--variant",
            "albumentations",
            "--data.pipeline albumentations --data.num_workers 0",
            "--out",
            str(out),
            *data_args(real_data_dir, real_archive),
            "--data.batch_size=32",
        ]
    )
    rows = [
        line
        for line in out.read_text().splitlines()
        if line.startswith("| device") or line.startswith("| albumentations")
    ]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(float(c.split()[0].replace(",", "")) > 0 for c in cells[2:5])  # three measured rates
        assert 0 < float(cells[5].split()[0]) < 2  # fit / plain, paired
        assert cells[6].endswith("x")


def test_overhead_profile_classes_each_sample_by_its_innermost_work_frame():
    from benchmarks.overhead_profile import classify

    loop = "main (cli.py:1);run (lightning/pytorch/loops/fit_loop.py:216);advance (lightning/pytorch/loops/training_epoch_loop.py:3)"
    assert classify("main (cli.py:1);setup (lightning/pytorch/trainer/trainer.py:9)") is None  # outside the loop
    assert classify(loop + ";forward (cifar_lightning/models/compact.py:60)") == "network forward"
    assert (
        classify(loop + ";forward (cifar_lightning/models/compact.py:60);backward (torch/autograd/__init__.py:5)")
        == "backward"
    )
    assert classify(loop + ";step (torch/optim/sgd.py:80)") == "optimizer and scheduler"
    assert (
        classify(
            loop + ";__getitem__ (cifar_lightning/data/dataset.py:20);apply (albumentations/core/composition.py:1)"
        )
        == "data"
    )
    overhead = classify(
        loop + ";log (lightning/pytorch/core/module.py:400);on_train_batch_end (cifar_lightning/callbacks.py:265)"
    )
    assert overhead == "Lightning and callbacks (overhead)"


def test_plain_and_fit_alternate_which_runs_first_and_the_ratio_is_paired_per_repeat():
    from benchmarks.throughput import kinds_in_order, paired_ratios

    orders = [kinds_in_order(repeat) for repeat in range(4)]
    assert all(order[0] == "pipeline" and sorted(order[1:]) == ["fit", "plain"] for order in orders)
    assert [order[1] for order in orders] == ["plain", "fit", "plain", "fit"]  # ABBA: each first in half
    # a fit at 0.97 of the plain loop on a machine that drifts 25% between repeats reads 0.97 in every repeat
    assert paired_ratios([1000.0, 1250.0], [970.0, 1212.5]) == pytest.approx([0.97, 0.97])
    with pytest.raises(ValueError):
        paired_ratios([1.0, 2.0], [1.0])  # a lost measurement must not shift the pairs
