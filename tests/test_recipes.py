"""The shipped recipes through the real entry point, and test-time augmentation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_lightning.lightning_cli import run_cli
from cifar_lightning.models import CompactNet, ResidualCompactNet
from cifar_lightning.training.module import ImageClassifier
from harness import REPO, TINY, data_args


@pytest.mark.slow
@pytest.mark.parametrize(
    ("recipe", "network_class"),
    [("fast", CompactNet), ("sprint", CompactNet), ("hour", ResidualCompactNet)],
)
def test_recipe_fits_and_tests_in_bf16_with_its_test_time_views(
    recipe, network_class, tmp_path, real_data_dir, real_archive, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / f"{recipe}.yaml")
    result = run_cli(["fit", "--config", config, *data_args(real_data_dir, real_archive), *TINY])
    assert type(result.model.network) is network_class
    assert result.trainer.precision == "bf16-mixed"
    assert result.trainer.global_step == 3
    tested = run_cli(
        ["test", "--config", config, *data_args(real_data_dir, real_archive), *TINY, "--ckpt_path", "last"]
    )
    level, views = {"fast": ("flip", 2), "sprint": ("flip", 2), "hour": ("flip_shift", 6)}[recipe]
    assert tested.model.tta == level
    assert tested.trainer.callback_metrics["test/views"] == views  # the test records the views it averaged
    # the evaluating command decides the views; nothing of them is saved with the weights
    (last,) = tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt")
    assert "tta" not in torch.load(last, weights_only=True)["hyper_parameters"]
    single = run_cli(
        [
            "test",
            "--config",
            config,
            *data_args(real_data_dir, real_archive),
            *TINY,
            "--model.tta=none",
            "--ckpt_path",
            str(last),
        ]
    )
    assert single.model.tta == "none" and single.trainer.callback_metrics["test/views"] == 1


class LeftHalfNet(nn.Module):
    """Scores depend on the left half of the image only, so a mirror image scores differently."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[..., :16].flatten(1))


def test_flip_averages_an_image_and_its_mirror():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    single = ImageClassifier(LeftHalfNet(), channels_last=False)
    tta = ImageClassifier(single.network, channels_last=False, tta="flip")
    expected = (single(images) + single(images.flip(3))) / 2
    torch.testing.assert_close(tta.evaluate(images), expected)
    # the averaged prediction cannot tell an image from its mirror; the single view can
    torch.testing.assert_close(tta.evaluate(images.flip(3)), tta.evaluate(images))
    assert not torch.allclose(single.evaluate(images.flip(3)), single.evaluate(images))


def test_flip_shift_adds_the_mirrored_pairs_shifted_two_pixels_both_diagonal_ways():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    model = ImageClassifier(LeftHalfNet(), channels_last=False, tta="flip_shift")
    pair = ImageClassifier(model.network, channels_last=False, tta="flip").evaluate
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    shifted = (pair(padded[..., :32, :32]) + pair(padded[..., 4:, 4:])) / 2
    torch.testing.assert_close(model.evaluate(images), (pair(images) + shifted) / 2)
    assert [ImageClassifier(model.network, tta=level).views for level in ("none", "flip", "flip_shift")] == [1, 2, 6]


def test_an_unknown_test_time_level_is_refused_in_python():
    with pytest.raises(ValueError, match="tta must be one of none, flip, flip_shift"):
        ImageClassifier(LeftHalfNet(), tta="mirror")


PARAMETER_BUDGET = 200_000  # the project's rule for every network it ships
RECIPES_WITH_A_NETWORK = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if "network:" in p.read_text())


def test_every_shipped_recipe_names_a_network():
    assert RECIPES_WITH_A_NETWORK == [
        "cnn.yaml",
        "fast.yaml",
        "hour.yaml",
        "sprint.yaml",
    ]  # the add-ons (gpu, ddp, distill, logger/) name none


@pytest.mark.parametrize("recipe", RECIPES_WITH_A_NETWORK)
def test_every_shipped_recipes_network_is_under_the_parameter_budget(recipe):
    """Built as the config builds it (LightningCLI, the config's own init_args), not from the class's defaults."""
    from cifar_lightning.lightning_cli import build

    network = build(str(REPO / "configs" / recipe), []).model.network
    assert sum(p.numel() for p in network.parameters()) < PARAMETER_BUDGET


# The seed recipe's state after 3 steps on the shipped subset, recorded at 148d9d8, before the data
# module learnt other datasets: the split (a digest of the held-out image ids), the training split's
# statistics, and every BatchNorm layer's running mean and variance summed (they follow the batches seen)
SEED_RECIPE_FINGERPRINT = {
    "held_out": "688a6e256c7e4ec4ced1280dd1ee84f18f64248630c4c9502aad4cadb4b29c73",
    "mean": [0.49109648656161003, 0.48149447763238523, 0.44459124539960215],
    "std": [0.2449223548235701, 0.24378316209451584, 0.2620218195640483],
    "batch_norm_sums": [
        *(0.0198756, 13.3299001, -0.5074626, 18.3478181, 0.2299896, 24.9115497, 0.4694134, 36.6477609, 0.0829311),
        *(50.0536706, 0.3613037, 49.7221338, 0.2954198, 75.0024433, -0.462993, 97.5772678, -0.0510119, 37.5928627),
    ],
}


def test_the_seed_recipe_trains_on_cifar10_as_it_did(tmp_path, real_data_dir, real_archive, monkeypatch):
    """CIFAR-10 through the generic data module: the same split, statistics and batches as before it."""
    import hashlib

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sums are exact to 1e-7 at one thread; more threads reorder float additions
    try:
        result = run_cli(
            ["fit", "--config", str(REPO / "configs" / "cnn.yaml"), *data_args(real_data_dir, real_archive), *TINY]
        )
    finally:
        torch.set_num_threads(threads)
    data, state = result.datamodule, result.model.network.state_dict()
    assert hashlib.sha256("\n".join(data.held_out).encode()).hexdigest() == SEED_RECIPE_FINGERPRINT["held_out"]
    assert list(data.mean) == SEED_RECIPE_FINGERPRINT["mean"] and list(data.std) == SEED_RECIPE_FINGERPRINT["std"]
    sums = [float(v.double().sum()) for k, v in state.items() if k.endswith(("running_mean", "running_var"))]
    assert sums == pytest.approx(SEED_RECIPE_FINGERPRINT["batch_norm_sums"], rel=1e-5, abs=1e-6)
