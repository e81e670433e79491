"""``FaceImageLogger``: reconstruction pictures every N training steps and code histograms after each
validation, to W&B, TensorBoard, or PNG files beside other loggers' logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from facegen.data.batch import FaceBatch
from facegen.decoder.code import PARTS
from facegen.export.files import write_png_atomic
from facegen.export.pictures import draw_landmarks, to_uint8
from facegen.predictions import Reconstruction


class FaceImageLogger(Callback):
    """Logs input | render | overlay | landmarks | geometry for ``max_images`` faces every ``every_n_steps``
    training steps (rank 0 only), and histograms of each code part over the last validation batch.

    For tasks that reconstruct faces: ``reconstruct(batch, geometry=True)`` giving a
    :class:`~facegen.predictions.Reconstruction`, and ``forward(image)`` giving the code."""

    def __init__(self, every_n_steps: int = 500, max_images: int = 4) -> None:
        self.every_n_steps, self.max_images = every_n_steps, max_images
        self._last_val_batch: FaceBatch | None = None
        self._folder: Path | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        # trainer.log_dir is a collective under DDP: resolve it here, on every rank, not in rank-0-only hooks.
        self._folder = Path(trainer.log_dir or trainer.default_root_dir) / "images"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and self.every_n_steps > 0 and step % self.every_n_steps == 0:
            was_training = pl_module.training
            pl_module.eval()
            first = batch.take(range(min(self.max_images, len(batch))))
            panels = reconstruction_panels(pl_module.reconstruct(first, geometry=True), self.max_images)
            pl_module.train(was_training)
            self.log_image(trainer, "reconstruction", panels, step, self._folder)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if batch_idx == 0:
            self._last_val_batch = batch

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or self._last_val_batch is None or trainer.sanity_checking:
            return
        code = pl_module(self._last_val_batch.image)
        for logger in trainer.loggers:
            for part in PARTS:
                values = getattr(code, part).detach().float().cpu()
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_histogram(f"code/{part}", values, trainer.global_step)
                elif isinstance(logger, WandbLogger):
                    import wandb

                    logger.experiment.log(
                        {
                            f"code/{part}": wandb.Histogram(values.numpy()),
                            "trainer/global_step": trainer.global_step,
                        }
                    )
        self._last_val_batch = None

    @staticmethod
    def log_image(trainer, key: str, image: np.ndarray, step: int, folder: Path) -> None:
        """``image`` (H, W, 3) uint8 to every logger that takes images; PNG files in ``folder`` otherwise."""
        written = False
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[image], step=step)
                written = True
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, image, step, dataformats="HWC")
                written = True
        if not written:
            folder.mkdir(parents=True, exist_ok=True)
            write_png_atomic(folder / f"{key}-{step:07d}.png", image)


def reconstruction_panels(reconstruction: Reconstruction, max_images: int = 4) -> np.ndarray:
    """(rows * S, 5 * S, 3) uint8: input | render | overlay | landmarks (detected green, fitted red) | grey
    shaded geometry, one row per face (at most ``max_images``); the reconstruction must carry ``geometry``."""
    if reconstruction.geometry is None:
        raise ValueError("reconstruction_panels needs a reconstruction made with geometry=True")
    batch, render = reconstruction.batch, reconstruction.render
    rows = []
    for i in range(min(max_images, len(batch))):
        photo, rendered = to_uint8(batch.image[i]), to_uint8(render.image[i])
        mask = render.mask[i, 0].cpu().numpy()[..., None]
        overlay = (photo * (1 - 0.8 * mask) + rendered * 0.8 * mask).astype(np.uint8)
        marks = draw_landmarks(photo.copy(), batch.landmarks[i].cpu().numpy(), (0, 220, 0))
        marks = draw_landmarks(marks, reconstruction.decoded.landmarks[i].cpu().numpy(), (230, 0, 0))
        rows.append(
            np.concatenate([photo, rendered, overlay, marks, to_uint8(reconstruction.geometry[i])], 1)
        )
    return np.concatenate(rows, 0)
