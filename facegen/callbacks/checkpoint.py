"""``ModelCheckpoint``: Lightning's, with a ``last.ckpt`` that is always the run's latest state.

Lightning writes ``last.ckpt`` only alongside a new top-k checkpoint, so a monitored metric that stops improving
(a GAN's noisy KID, a plateaued loss) leaves ``last.ckpt`` at an old step, and the steps after the last
validation are never written. Here ``last.ckpt`` is also written after every validation and when training ends
(``--ckpt_path last`` then resumes where the run stopped, and the quickstarts read the trained networks).
:class:`CheckpointOnStop` writes it when a fit is stopped by a signal."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


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


class CheckpointOnStop(Callback):
    """Saves ``last.ckpt`` when a fit stops on SIGTERM (Lightning ends the training step first) or Ctrl-C, in the
    run's checkpoint folder (or ``default_root_dir`` without one), where ``--ckpt_path last`` finds it: the
    newest ``last.ckpt`` of the run. Added to every ``facegen fit`` (:mod:`facegen.signals`)."""

    DONE = "last.ckpt saved; resume with the same command and --ckpt_path last"

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.global_step == 0:
            return
        checkpoints = trainer.checkpoint_callback
        folder = Path(
            checkpoints.dirpath if checkpoints and checkpoints.dirpath else trainer.default_root_dir
        )
        path = folder / f"last{LightningModelCheckpoint.FILE_EXTENSION}"
        if trainer.is_global_zero and path.is_symlink():  # Lightning's save_last="link": replace, not follow
            path.unlink()
        trainer.save_checkpoint(path)
        rank_zero_info(f"facegen fit: stopped at step {trainer.global_step}; saved {path}")
