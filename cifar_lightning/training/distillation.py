"""Knowledge distillation (Hinton et al., 2015): soft targets from a frozen teacher this project trained, which
stays out of the student's parameters and checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from jsonargparse.typing import ClosedUnitInterval, PositiveFloat
from torch import Tensor, nn
from torch.nn import functional as F

from cifar_lightning.errors import CheckpointError
from cifar_lightning.runs.checkpoints import read_checkpoint
from cifar_lightning.training.trust import NETWORK_PREFIX, TEACHER_HINT, check_shapes


class Distillation:
    """Blends cross-entropy on the labels with a KL term towards a teacher's softened predictions.

    Args:
        teacher: the teacher's network, built as in the run that trained it (its ``config.yaml``).
        checkpoint: that run's checkpoint, loaded into ``teacher`` when ``fit`` starts.
        weight: share of the KL term in the loss; ``1 - weight`` goes to the labels' cross-entropy.
        temperature: softens both distributions; the KL term is scaled by its square (Hinton et al.).
        bf16: run the teacher under bfloat16 autocast (it only infers).
    """

    def __init__(
        self,
        teacher: nn.Module,
        checkpoint: str,
        weight: ClosedUnitInterval = 0.9,
        temperature: PositiveFloat = 4.0,
        bf16: bool = True,
    ) -> None:
        self.teacher = teacher
        self.checkpoint = checkpoint
        # the types are the rules: the parser applies them, and so does a Python caller here
        self.weight = float(ClosedUnitInterval(weight))
        self.temperature = float(PositiveFloat(temperature))
        self.bf16 = bf16

    def load_teacher(self, device: torch.device, channels_last: bool) -> None:
        path = Path(self.checkpoint)
        if not path.is_file():
            raise CheckpointError(
                f"teacher checkpoint {path} does not exist: train the teacher first, or fix model.distillation.checkpoint"
            )
        saved = read_checkpoint(path)
        # only its weights are read, into the teacher the config built: nothing it names is imported
        check_shapes(
            self.teacher,
            saved.get("state_dict"),
            f"teacher checkpoint {path}",
            "model.distillation.teacher",
            TEACHER_HINT,
        )
        self.teacher.load_state_dict(
            {k[len(NETWORK_PREFIX) :]: v for k, v in saved["state_dict"].items() if k.startswith(NETWORK_PREFIX)}
        )
        self.teacher.requires_grad_(False).eval().to(device)
        if channels_last:
            self.teacher.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def teacher_logits(self, images: Tensor) -> Tensor:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.teacher(images).float()

    def loss(self, student_logits: Tensor, label_loss: Tensor, images: Tensor) -> Tensor:
        t = self.temperature
        soft_targets = F.log_softmax(self.teacher_logits(images) / t, dim=1)
        kl = F.kl_div(
            F.log_softmax(student_logits.float() / t, dim=1), soft_targets, reduction="batchmean", log_target=True
        )
        return (1 - self.weight) * label_loss + self.weight * t * t * kl
