"""The tuning table names what each run changed against the baseline config."""

from cifar_lightning.tools.compare import changes


def test_changes_lists_only_training_differences():
    baseline = {"seed_everything": 42, "model": {"label_smoothing": 0.0, "optimizer": {"init_args": {"lr": 0.05}}}}
    config = {
        "seed_everything": 42,
        "model": {"label_smoothing": 0.1, "optimizer": {"init_args": {"lr": 0.1}}},
        "trainer": {"logger": {"init_args": {"version": "r9"}}},  # naming, not training
    }
    assert changes(config, baseline) == "model.label_smoothing=0.1, model.optimizer.init_args.lr=0.1"
    assert changes(baseline, baseline) == "(baseline)"


def test_a_section_the_baseline_fills_and_the_run_leaves_empty_is_a_change():
    teacher = {"class_path": "cifar_lightning.training.distillation.Distillation", "init_args": {"weight": 0.9}}
    baseline = {"model": {"distillation": teacher, "pct_start": 0.25}}
    assert changes({"model": {"distillation": None, "pct_start": 0.25}}, baseline) == "model.distillation=None"
    assert changes({"model": {"distillation": teacher, "pct_start": 0.15}}, baseline) == "model.pct_start=0.15"
    # an older run's config, written before the setting existed, has no key for it at all
    assert changes({"model": {"pct_start": 0.25}}, baseline) == "model.distillation=(not set)"
