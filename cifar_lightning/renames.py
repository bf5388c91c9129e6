"""Names this project has retired: the classes that moved and the options that changed.

``cifar-lightning upgrade`` rewrites a run folder that uses them; a command that meets one in a
config says to run it. A rename that comes without an entry here strands users' run folders.
"""

RENAMED_CLASSES = {
    "cifar_lightning.averaging.EMAWithWarmup": "cifar_lightning.callbacks.EMAWithWarmup",
    "cifar_lightning.precision_advice.PrecisionAdvice": "cifar_lightning.callbacks.PrecisionAdvice",
    "cifar_lightning.distillation.Distillation": "cifar_lightning.training.Distillation",
    "cifar_lightning.module.ImageClassifier": "cifar_lightning.training.module.ImageClassifier",
    "cifar_lightning.checkpoint_io.AtomicCheckpointIO": "cifar_lightning.runs.checkpoint_io.AtomicCheckpointIO",
}
# option -> what replaced it
RENAMED_OPTIONS = {
    "model.flip_tta": "model.tta",
    "model.tta_shift": "model.tta",
    "data.augmentation.shift": "data.augmentation.shift_px",
    "optimizer": "model.optimizer",  # LightningCLI's own, always null here
    "lr_scheduler": "the module's OneCycle schedule",
    "speed_monitor.window_size": "trainer.log_every_n_steps",  # the rate is averaged between logging steps
}

# settings added since runs were first written -> the value every run written before then used
ADDED_SETTINGS = {
    "data.pipeline": "albumentations",
}


def retired_name_in(message: str) -> str | None:
    """The retired class or option a parse error's message names, if any."""
    for old in RENAMED_CLASSES:
        if old in message:
            return old
    for old in RENAMED_OPTIONS:
        if f"'{old}'" in message or f"'{old.rsplit('.', 1)[-1]}'" in message:
            return old
    return None
