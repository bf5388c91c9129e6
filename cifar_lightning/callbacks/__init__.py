"""Callbacks: behaviour that cuts across model and data, one concern per module."""

from cifar_lightning.callbacks.ema import EMAWithWarmup
from cifar_lightning.callbacks.loss_guard import FiniteLossGuard, NonFiniteLossError
from cifar_lightning.callbacks.messages import FitSummary, ResumeHint, last_checkpoint_path
from cifar_lightning.callbacks.precision_advice import PrecisionAdvice
from cifar_lightning.callbacks.predictions import PredictionWriter
from cifar_lightning.callbacks.preview import AugmentationPreview
from cifar_lightning.callbacks.progress import LoggingStepProgressBar, with_progress_bar
from cifar_lightning.callbacks.random_state import RandomState
from cifar_lightning.callbacks.run_record import HELD_OUT, RUN_INFO, RunInfo, SaveStageConfig
from cifar_lightning.callbacks.speed import SpeedMonitor
from cifar_lightning.callbacks.summaries import HParamsSummary, TestFigures
from cifar_lightning.callbacks.whitening import FitPatchWhitening

__all__ = [
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
    "with_progress_bar",
]
