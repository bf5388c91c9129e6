"""Callbacks: behaviour that cuts across model and data, one concern per module, and the ones every run gets."""

from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary

from cifar_lightning.callbacks.ema import EMAWithWarmup
from cifar_lightning.callbacks.loss_guard import FiniteLossGuard, NonFiniteLossError
from cifar_lightning.callbacks.messages import FitSummary, ResumeHint, last_checkpoint_path
from cifar_lightning.callbacks.precision_advice import PrecisionAdvice
from cifar_lightning.callbacks.predictions import PredictionWriter
from cifar_lightning.callbacks.preview import AugmentationPreview
from cifar_lightning.callbacks.progress import LoggingStepProgressBar
from cifar_lightning.callbacks.random_state import RandomState
from cifar_lightning.callbacks.run_record import HELD_OUT, RUN_INFO, RunInfo, SaveStageConfig
from cifar_lightning.callbacks.speed import SpeedMonitor
from cifar_lightning.callbacks.summaries import HParamsSummary, TestFigures
from cifar_lightning.callbacks.whitening import FitPatchWhitening

# The callbacks every run gets besides the config's trainer.callbacks and the two checkpoints: each
# key is on by default and off with --KEY null (docs/callbacks.md says what each does)
SWITCHABLE_CALLBACKS = {
    "random_state": (RandomState, {}),
    "finite_loss_guard": (FiniteLossGuard, {}),
    "fit_summary": (FitSummary, {}),
    "resume_hint": (ResumeHint, {}),
    "prediction_writer": (PredictionWriter, {}),
    "speed_monitor": (SpeedMonitor, {}),
    "hparams_summary": (HParamsSummary, {}),
    "test_figures": (TestFigures, {}),
    "augmentation_preview": (AugmentationPreview, {}),
    "precision_advice": (PrecisionAdvice, {}),
    "lr_monitor": (LearningRateMonitor, {"logging_interval": "step"}),
    "model_summary": (ModelSummary, {"max_depth": 3}),
    "progress_bar": (LoggingStepProgressBar, {}),  # off by itself with the Trainer's bar, or beside another bar
}


__all__ = [
    "SWITCHABLE_CALLBACKS",
    "HELD_OUT",
    "RUN_INFO",
    "AugmentationPreview",
    "EMAWithWarmup",
    "FiniteLossGuard",
    "FitPatchWhitening",
    "FitSummary",
    "HParamsSummary",
    "LoggingStepProgressBar",
    "NonFiniteLossError",
    "PrecisionAdvice",
    "PredictionWriter",
    "RandomState",
    "ResumeHint",
    "RunInfo",
    "SaveStageConfig",
    "SpeedMonitor",
    "TestFigures",
    "last_checkpoint_path",
]
