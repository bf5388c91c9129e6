"""The tuning table names what each run changed against the baseline config."""

from cifar_lightning.compare import changes


def test_changes_lists_only_training_differences():
    baseline = {"seed_everything": 42, "model": {"label_smoothing": 0.0, "optimizer": {"init_args": {"lr": 0.05}}}}
    config = {
        "seed_everything": 42,
        "model": {"label_smoothing": 0.1, "optimizer": {"init_args": {"lr": 0.1}}},
        "trainer": {"logger": {"init_args": {"version": "r9"}}},  # naming, not training
    }
    assert changes(config, baseline) == "model.label_smoothing=0.1, model.optimizer.init_args.lr=0.1"
    assert changes(baseline, baseline) == "(baseline)"
