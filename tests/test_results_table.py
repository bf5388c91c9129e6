"""The README's results table is generated from summary.json files."""

import json
import shutil

import pytest
import yaml
from results_table import END, HISTORY_END, HISTORY_START, START, main

from harness import REPO

MARKERS = f"{START}\n{END}\n{HISTORY_START}\n{HISTORY_END}\n"


def made_by(run, config: str = "configs/cnn.yaml", **overrides) -> dict:
    """The run folder as a fit of a shipped config writes it: its config.yaml, and the command in its summary."""
    run.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / config, run / "config.yaml")
    if overrides:
        settings = (run / "config.yaml").read_text()
        for old, new in overrides.items():
            settings = settings.replace(old, new)
        (run / "config.yaml").write_text(settings)
    return {"command": f"python -m cifar_lightning fit --config {config} --data.archive x.tar.gz"}


def test_table_is_rebuilt_between_markers(tmp_path):
    run = tmp_path / "results" / "seed-cnn"
    summary = {
        **made_by(run),
        "parameters": 150738,
        "epochs": 50,
        "test_acc": 0.8812,
        "first_epoch_val_acc_ge_85": 30,
        "epoch_numbering": "from 0",
        "fit_wall_time_s": 1500.0,
        "seconds_per_epoch": 30.0,
        "network": "cifar_lightning.models.seed.SeedNet",
        "train_images_per_sec": 1712.4,
        "reference_images_per_s": 2636.75,
        "fit_minutes_scaled": 18.74,  # the yardstick ran at 0.75 of its committed rate that day
        "data": {"archive": "../shared/data/cifar10-jpeg.tar.gz"},
        "machine": {"cpu": "Some CPU", "torch_threads": 2, "precision": "32-true"},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\n{HISTORY_START}\n{HISTORY_END}\noutro\n")
    main(["--readme", str(readme), "--results", str(tmp_path / "results"), "--repo", str(REPO)])
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert (
        "| [seed-cnn](results/seed-cnn/) | SeedNet | 150,738 | 50 | 88.12% (1 view) | 88.12% | 30 | 25.0 min | 18.7 min | 2,637 | 1,712 | cifar10-jpeg.tar.gz | 32-true |"
        in text
    )
    assert "| seed (published) | SeedNet | 150,738 | 50 | 87.31% |" in text


@pytest.mark.parametrize(
    ("views", "mark"),
    [
        ({"test_views": 2}, " (2 views: flip) | not measured"),
        ({"test_views": 6}, " (6 views) | not measured"),
        ({"test_views": 1}, " (1 view) | 90.00%"),
        ({}, " (1 view) | 90.00%"),
    ],
)
def test_test_time_augmentation_is_marked_beside_the_single_view(views, mark, tmp_path):
    summary = {
        "parameters": 194130,
        "epochs": 130,
        "test_acc": 0.9,
        "best_val_acc": 0.8,
        "network": "x.CompactNet",
        **views,
    }
    assert f"| [best](results/best/) | CompactNet | 194,130 | 130 | 90.00%{mark} | never |" in table_of_one_run(
        tmp_path, summary
    )


def test_the_single_view_figure_comes_from_the_runs_retest(tmp_path):
    summary = {
        "parameters": 194130,
        "epochs": 15,
        "test_acc": 0.863,
        "best_val_acc": 0.86,
        "network": "x.CompactNet",
        "test_views": 2,
    }
    made_by(tmp_path / "results" / "best", "configs/best.yaml")
    (tmp_path / "results" / "best" / "retest.json").write_text(json.dumps({"test_acc_single_view": 0.8514}))
    assert "| 86.30% (2 views: flip) | 85.14% |" in table_of_one_run(tmp_path, summary)


def test_a_run_without_validation_says_so(tmp_path):
    summary = {
        "parameters": 184226,
        "epochs": 130,
        "test_acc": 0.9,
        "best_val_acc": None,
        "network": "x.ResidualCompactNet",
    }
    table = table_of_one_run(tmp_path, summary)
    assert "| 130 | 90.00% (1 view) | 90.00% | no val |" in table
    assert (
        "| no val | – min | not measured | not measured |" in table
    )  # a run made before the yardstick and the reference rate


def table_of_one_run(tmp_path, summary: dict) -> str:
    """The README text after generating the tables from one run of configs/best.yaml, results/best, with this summary."""
    run = tmp_path / "results" / "best"
    (run / "summary.json").write_text(json.dumps({**made_by(run, "configs/best.yaml"), **summary}))
    readme = tmp_path / "README.md"
    readme.write_text(MARKERS)
    main(["--readme", str(readme), "--results", str(tmp_path / "results"), "--repo", str(REPO)])
    return readme.read_text()


def test_a_run_no_shipped_config_reproduces_goes_to_the_history_table_with_what_differs(tmp_path):
    run = tmp_path / "results" / "old"
    summary = {
        **made_by(run, "configs/fast.yaml", **{"shift_px: 2": "shift_px: 1", "lr: 0.4": "lr: 0.2"}),
        "parameters": 194130,
        "epochs": 15,
        "test_acc": 0.86,
        "best_val_acc": 0.87,
        "network": "x.CompactNet",
    }
    (run / "summary.json").write_text(json.dumps(summary))
    readme = tmp_path / "README.md"
    readme.write_text(MARKERS)
    main(["--readme", str(readme), "--results", str(tmp_path / "results"), "--repo", str(REPO)])
    current, history = readme.read_text().split(HISTORY_START)
    assert "[old]" not in current
    assert (
        "| data.augmentation.shift_px, model.optimizer.init_args.lr |" in history and "[old](results/old/)" in history
    )


def test_a_run_of_the_recipe_on_the_other_data_pipeline_stays_in_the_results_table_and_says_which(tmp_path):
    run = tmp_path / "results" / "other-pipeline"
    summary = {
        **made_by(run, "configs/fast.yaml"),
        "parameters": 194130,
        "epochs": 15,
        "test_acc": 0.86,
        "best_val_acc": 0.87,
        "network": "x.CompactNet",
    }
    shipped = yaml.safe_load((REPO / "configs/fast.yaml").read_text())["data"].get(
        "pipeline", "device"
    )  # the data module's default
    other = "albumentations" if shipped == "device" else "device"
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["pipeline"] = other
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run / "summary.json").write_text(json.dumps(summary))
    readme = tmp_path / "README.md"
    readme.write_text(MARKERS)
    main(["--readme", str(readme), "--results", str(tmp_path / "results"), "--repo", str(REPO)])
    current, history = readme.read_text().split(HISTORY_START)
    assert "[other-pipeline]" in current and f"({other} pipeline)" in current and "[other-pipeline]" not in history


def test_frontier_reads_views_single_view_and_reference_rate_from_the_run_folders(tmp_path):
    from frontier import write

    def run(name: str, epochs: int, planned: int, **summary) -> None:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(f"trainer:\n  max_epochs: {planned}\n")
        (folder / "summary.json").write_text(
            json.dumps({"epochs": epochs, "fit_wall_time_s": 600.0, "test_acc": 0.87, **summary})
        )

    run("fast", 15, 15, test_views=2, test_acc_single_view=0.856, reference_images_per_s=1841.5, fit_minutes_scaled=7.5)
    run("best", 130, 130, test_views=6)  # re-tested single view (retest.json)
    (tmp_path / "best" / "retest.json").write_text(json.dumps({"test_acc_single_view": 0.8833}))
    run("stopped", 33, 50)  # stopped before its planned end: not a point of its recipe
    write(tmp_path)
    table = (tmp_path / "frontier.md").read_text()
    assert "| fast | ?-core CPU | 15 | 10.0 | 7.5 | 1,842 | 87.00% (2) | 85.60% |" in table
    assert "| best | ?-core CPU | 130 | 10.0 | no yardstick | not measured | 87.00% (6) | 88.33% |" in table
    assert (
        "stopped |" not in table and "| seed, published | original lossless CIFAR-10, another data copy | 50 |" in table
    )
    assert (tmp_path / "frontier.png").read_bytes().startswith(b"\x89PNG")
