"""``FaceImageLogger``: reconstruction pictures every N training steps and code histograms after each
validation, to W&B, TensorBoard, or PNG files beside other loggers' logs; with W&B, also a few validation
reconstructions as turnable 3D meshes (``wandb.Object3D`` of GLB files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from facegen.atomic import write_bytes_atomic
from facegen.data.batch import FaceBatch
from facegen.decoder.code import PARTS
from facegen.export.files import write_png_atomic
from facegen.export.gltf import GltfMesh, glb_bytes
from facegen.export.pictures import draw_landmarks, to_uint8
from facegen.geometry.normals import vertex_normals
from facegen.predictions import Reconstruction


class FaceImageLogger(Callback):
    """Logs input | render | overlay | landmarks | geometry for ``max_images`` faces every ``every_n_steps``
    training steps (rank 0 only), and histograms of each code part over the last validation batch; to W&B also
    the encoder's reconstruction of the first ``meshes_3d`` faces of that batch as 3D meshes with their
    reflectance as vertex colours (GLB files in the log folder's ``meshes/``; 0: off).

    For tasks that reconstruct faces: ``reconstruct(batch, geometry=True)`` giving a
    :class:`~facegen.predictions.Reconstruction`, and ``forward(image)`` giving the code; the 3D meshes also
    need the task's ``decoder`` (MoFA's)."""

    def __init__(self, every_n_steps: int = 500, max_images: int = 4, meshes_3d: int = 2) -> None:
        self.every_n_steps, self.max_images, self.meshes_3d = every_n_steps, max_images, meshes_3d
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
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if wandb_loggers and self.meshes_3d > 0 and hasattr(pl_module, "decoder"):
            self._log_meshes(wandb_loggers, pl_module, trainer.global_step)
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

    def _log_meshes(self, loggers: list[WandbLogger], pl_module, step: int) -> None:
        """The encoder's reconstruction of the first :attr:`meshes_3d` faces of the last validation batch, as GLB
        files (model axes, metres, reflectance colours) logged as ``val/reconstruction_3d``."""
        import wandb

        first = self._last_val_batch.take(range(min(self.meshes_3d, len(self._last_val_batch))))
        with torch.no_grad():
            reconstruction = pl_module.reconstruct(first)
        model = pl_module.decoder.model
        folder = self._folder / "meshes"
        folder.mkdir(parents=True, exist_ok=True)
        objects = []
        for i in range(len(first)):
            vertices = reconstruction.vertices_model[i].float().cpu()
            mesh = GltfMesh(
                vertices=vertices.double().numpy(),
                normals=vertex_normals(vertices[None], model.faces.cpu())[0].numpy(),
                faces=model.faces.cpu().numpy(),
                uv=None,
                uv_faces=None,
                texture_png=None,
                targets=None,
                target_names=[],
                weights=np.zeros(0),
                metres_per_unit=model.mm_per_unit / 1000.0,
                colours=reconstruction.decoded.albedo[i].float().cpu().numpy(),
            )
            path = write_bytes_atomic(folder / f"step{step:07d}-{i}.glb", glb_bytes(mesh))
            objects.append(wandb.Object3D(str(path)))
        for logger in loggers:
            logger.experiment.log({"val/reconstruction_3d": objects, "trainer/global_step": step})

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
