"""The README's table of recipes is generated from the summaries `cifar-lightning report` wrote."""

import json
import shutil

import pytest
import yaml
from results_table import END, RECIPES, START, main

from harness import REPO

pytestmark = pytest.mark.slow  # each recipe's config is parsed twice through the CLI


def summary(test_acc: float, minutes: float, views: int = 1, single: float | None = None) -> dict:
    return {
        "network": "cifar_lightning.models.seed.SeedNet",
        "parameters": 150738,
        "epochs": 50,
        "test_acc": test_acc,
        "test_acc_single_view": single,
        "test_views": views,
        "fit_minutes": minutes,
        "machine": {"cpu": "AMD EPYC 9R14", "cpu_count": 2, "gpu": None},
    }


@pytest.fixture
def results(tmp_path):
    """A results folder with a headline run of every shipped recipe, as each config trains it."""
    for recipe in RECIPES:
        folder = tmp_path / "results" / recipe
        folder.mkdir(parents=True)
        shutil.copy(REPO / "configs" / f"{recipe}.yaml", folder / "config.yaml")
        (folder / "summary.json").write_text(json.dumps(summary(0.80, 10.0)))
    return tmp_path / "results"


def generate(tmp_path, results) -> str:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\noutro\n")
    main(["--readme", str(readme), "--results", str(results), "--repo", str(REPO)])
    return readme.read_text()


def test_one_row_per_recipe_in_order_with_the_mean_and_spread_of_its_seeds(tmp_path, results, monkeypatch):
    import results_table

    # the configs are copies of the shipped ones: compared as written (the next test parses them for real)
    monkeypatch.setattr(results_table, "parsed", lambda config: yaml.safe_load(config.read_text()))
    (results / "cnn" / "summary.json").write_text(json.dumps(summary(0.85, 20.0)))
    (results / "cnn" / "summary-s43.json").write_text(json.dumps(summary(0.84, 22.0)))
    (results / "cnn" / "summary-s44.json").write_text(json.dumps(summary(0.86, 24.0)))
    (results / "hour" / "summary.json").write_text(json.dumps(summary(0.90, 57.0, views=6, single=0.88)))
    text = generate(tmp_path, results)
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert [r.split("]")[0][3:] for r in rows] == RECIPES
    cnn, hour = rows[0], rows[-1]
    # the config's first line says what the recipe is for
    assert "| the course assignment's network" in cnn.lower() or "| the seed" in cnn.lower()
    assert "| 50 | 3 | 85.00% ± 1.00 | – | 22.0 on a 2-core AMD EPYC 9R14 |" in cnn  # the median of 20, 22, 24
    assert "| 50 | 1 | 88.00% | 90.00% (6 views) | 57.0 on a 2-core AMD EPYC 9R14 |" in hour


def test_a_headline_run_the_shipped_config_does_not_train_stops_the_table(tmp_path, results):
    config = results / "fast" / "config.yaml"
    config.write_text(config.read_text().replace("max_epochs: 15", "max_epochs: 16"))
    with pytest.raises(
        SystemExit, match=r"results/fast/config.yaml is not how configs/fast.yaml trains \(trainer.max_epochs\)"
    ):
        generate(tmp_path, results)
