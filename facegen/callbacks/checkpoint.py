"""``ModelCheckpoint``: Lightning's, with a ``last.ckpt`` that is always the run's latest state.

Lightning writes ``last.ckpt`` only alongside a new top-k checkpoint, so a monitored metric that stops improving
(a GAN's noisy KID, a plateaued loss) leaves ``last.ckpt`` at an old step, and the steps after the last
validation are never written. Here ``last.ckpt`` is also written after every validation and when training ends
(``--ckpt_path last`` then resumes where the run stopped, and the quickstarts read the trained networks)."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments) whose ``save_last`` keeps ``last.ckpt`` current."""

    _last_written_step: int = -1

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._refresh_last(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self._refresh_last(trainer)

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def _refresh_last(self, trainer) -> None:
        if (
            self.save_last
            and not self._should_skip_saving_checkpoint(trainer)
            and self._last_written_step != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
