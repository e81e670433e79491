"""``FaceTask``: what facegen's LightningModules share. A task declares the crops it expects
(:attr:`input_spec`, which data modules follow), produces the typed predictions of :mod:`facegen.predictions`,
names the callback that writes them (:meth:`prediction_writer`), and uses the shared checks for non-finite
losses and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from facegen.data.batch import InputSpec
from facegen.errors import ConfigError

#: Learning-rate schedules after the linear warm-up.
Schedule = Literal["constant", "cosine"]


class FaceTask(LightningModule, ABC):
    """Base of facegen's tasks (the torchgeo ``BaseTask`` pattern); subclasses set up their networks in
    ``__init__`` and implement the steps, :attr:`input_spec` and :meth:`prediction_writer`."""

    @property
    @abstractmethod
    def input_spec(self) -> InputSpec:
        """Image size, face model and framing of the crops this task reads (data modules follow it)."""

    @abstractmethod
    def prediction_writer(self, out: str, overwrite: bool, texture_size: int) -> BasePredictionWriter:
        """The callback that writes this task's predictions into ``out`` (``facegen predict --out``)."""

    def nonfinite(self, losses: Mapping[str, Tensor]) -> str | None:
        """A one-line report naming the step and the first of ``losses`` that is NaN or infinite, else None."""
        for name, value in losses.items():
            if not torch.isfinite(value).all():
                shown = value.item() if value.numel() == 1 else "not finite"
                return f"step {self.global_step}: loss term '{name}' is {shown}"
        return None

    def warmup_schedule(
        self, optimizer: torch.optim.Optimizer, schedule: Schedule, warmup_steps: int
    ) -> dict:
        """Lightning's optimizer config: ``optimizer`` with a linear warm-up over ``warmup_steps`` optimizer steps,
        then a ``constant`` rate or a ``cosine`` decay to 0 at the run's last step."""
        total = self.trainer.estimated_stepping_batches
        if schedule == "cosine" and not math.isfinite(total):
            raise ConfigError(
                "model.lr_schedule 'cosine' needs a finite run: set trainer.max_steps or max_epochs"
            )

        def factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            if schedule == "constant":
                return 1.0
            return 0.5 * (
                1 + math.cos(math.pi * min(1.0, (step - warmup_steps) / max(1, total - warmup_steps)))
            )

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
