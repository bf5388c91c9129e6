"""configs/fast.yaml and configs/best.yaml through the real entry point, and test-time augmentation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from cifar_lightning.cli import run_cli
from cifar_lightning.models import CompactNet, ResidualCompactNet
from cifar_lightning.module import ImageClassifier

from harness import REPO, TINY, data_args


@pytest.mark.parametrize(("recipe", "network_class"), [("fast", CompactNet), ("best", ResidualCompactNet)])
def test_recipe_fits_and_tests_in_bf16_with_flip_tta(recipe, network_class, tmp_path, real_data_dir, real_archive, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / f"{recipe}.yaml")
    result = run_cli(["fit", "--config", config, *data_args(real_data_dir, real_archive), *TINY])
    assert type(result.model.network) is network_class
    assert result.trainer.precision == "bf16-mixed" and result.model.flip_tta
    assert result.trainer.global_step == 3
    tested = run_cli(["test", "--config", config, *data_args(real_data_dir, real_archive), *TINY, "--ckpt_path", "last"])
    assert "test/acc" in tested.trainer.callback_metrics
    assert tested.model.tta_shift == (2 if recipe == "best" else 0)
    # the command line, not the checkpoint's saved hyperparameters, decides the test-time views
    # (an explicit path: Lightning reads a checkpoint's hyperparameters only from an existing file)
    (last,) = tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt")
    plain = ["--model.flip_tta=false", "--model.tta_shift=0", "--ckpt_path", str(last)]
    single = run_cli(["test", "--config", config, *data_args(real_data_dir, real_archive), *TINY, *plain])
    assert not single.model.flip_tta and single.model.tta_shift == 0


class LeftHalfNet(nn.Module):
    """Scores depend on the left half of the image only, so a mirror image scores differently."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[..., :16].flatten(1))


def test_flip_tta_averages_an_image_and_its_mirror():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    single = ImageClassifier(LeftHalfNet(), channels_last=False)
    tta = ImageClassifier(single.network, channels_last=False, flip_tta=True)
    expected = (single(images) + single(images.flip(3))) / 2
    torch.testing.assert_close(tta.evaluate(images), expected)
    # the averaged prediction cannot tell an image from its mirror; the single view can
    torch.testing.assert_close(tta.evaluate(images.flip(3)), tta.evaluate(images))
    assert not torch.allclose(single.evaluate(images.flip(3)), single.evaluate(images))


def test_tta_shift_adds_shifted_mirrored_pairs_outside_fit():
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    model = ImageClassifier(LeftHalfNet(), channels_last=False, flip_tta=True, tta_shift=2)
    pair = ImageClassifier(model.network, channels_last=False, flip_tta=True).evaluate
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    shifted = (pair(padded[..., :32, :32]) + pair(padded[..., 4:, 4:])) / 2
    torch.testing.assert_close(model.evaluate(images), (pair(images) + shifted) / 2)
    # the per-epoch validation inside fit keeps to the mirrored pair (cost)
    model._trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING))
    torch.testing.assert_close(model.evaluate(images), pair(images))
    model._trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.TESTING))
    torch.testing.assert_close(model.evaluate(images), (pair(images) + shifted) / 2)
