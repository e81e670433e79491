"""``TextureExporter``: the prediction writer of the texture model. Per generated seed (``seed_<n>/``) or
reconstructed face (``<face key>/``): the complete UV ``texture.png``, ``textured.obj`` + ``.mtl`` (the mean
shape for seeds, the fitted shape for photos, in model space), a picture (``views.png``: three viewpoints;
``side_by_side.png``: photo | render | two novel views) and ``generated.json`` or, for photos, ``fit.json``
(PSNR/SSIM/L1 on visible pixels, loss before/after). ``summary.json`` at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from facegen.atomic import write_text_atomic
from facegen.data.keys import OutputNames
from facegen.export.files import child_folder, write_png_atomic
from facegen.export.obj import write_textured_obj
from facegen.export.pictures import to_uint8
from facegen.morphable.model import MorphableModel
from facegen.predictions import GeneratedTextures, ReconstructedTextures


class TextureExporter(BasePredictionWriter):
    """Writes ``out/<name>/`` per prediction; complete folders (with their json) are skipped unless ``overwrite``.
    Reads only :class:`~facegen.predictions.GeneratedTextures` and :class:`~facegen.predictions.ReconstructedTextures`
    and the ``face_model`` it is given (triangles and UV layout of the meshes). ``texture_size``: side of the
    written textures (resampled when it differs from the generator's)."""

    def __init__(
        self, out: str, face_model: MorphableModel, overwrite: bool = False, texture_size: int | None = None
    ) -> None:
        super().__init__(write_interval="batch")
        self.out, self.overwrite, self.texture_size = Path(out), overwrite, texture_size
        self.faces = face_model.faces.cpu().numpy()
        self.uv = (face_model.uv_coords.cpu().numpy(), face_model.uv_faces.cpu().numpy())
        self._reset()

    def _reset(self) -> None:
        self.written: list[str] = []
        self.existing: list[str] = []
        self.rejected: list[dict] = []
        self.failed: list[dict] = []
        self.names = OutputNames()
        self._started = time.perf_counter()

    def on_predict_start(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self._reset()

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ):
        self.write(prediction)

    def write(self, prediction: GeneratedTextures | ReconstructedTextures) -> None:
        """Write every texture of ``prediction`` into its folder."""
        if isinstance(prediction, GeneratedTextures):
            names = [f"seed_{seed:06d}" for seed in prediction.seeds]
            records = [{"seed": seed, "truncation": prediction.truncation} for seed in prediction.seeds]
            pictures = list(prediction.views)
            picture_name, record_name = "views.png", "generated.json"
        else:
            batch, history, metrics = prediction.batch, prediction.fit_loss, prediction.metrics
            self.rejected += [reject._asdict() for reject in batch.rejects]
            names = list(batch.key)
            first, last = (history[0], history[-1]) if history else (None, None)
            records = [
                {
                    "source": batch.meta[i].get("source"),
                    "loss_first": first,
                    "loss_last": last,
                    **{name: float(value[i]) for name, value in metrics.items()},
                }
                for i in range(len(names))
            ]
            pictures = [
                torch.cat([batch.image[i], prediction.render[i], prediction.views[i]], 2)
                for i in range(len(names))
            ]
            picture_name, record_name = "side_by_side.png", "fit.json"
        for i, key in enumerate(names):
            name = self.names.name(key)
            if name is None:
                self.failed.append(
                    {"item": key, "error": "duplicate key: an earlier item of this run has it"}
                )
                continue
            folder = child_folder(self.out, name)
            if (folder / record_name).exists() and not self.overwrite:
                self.existing.append(name)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            write_png_atomic(folder / "texture.png", to_uint8(self._resized(prediction.texture[i])))
            vertices: np.ndarray = prediction.vertices_model[i].cpu().numpy()
            write_textured_obj(folder / "textured.obj", vertices, self.faces, *self.uv, "texture.png")
            write_png_atomic(folder / picture_name, to_uint8(pictures[i]))
            write_text_atomic(folder / record_name, json.dumps(records[i], indent=1))
            self.written.append(name)

    def _resized(self, texture: Tensor) -> Tensor:
        if not self.texture_size or self.texture_size == texture.shape[-1]:
            return texture
        size = (self.texture_size, self.texture_size)
        return F.interpolate(texture[None], size=size, mode="bilinear", align_corners=True)[0]

    def on_predict_end(self, trainer, pl_module) -> None:
        seconds = time.perf_counter() - self._started
        summary = {
            "out": str(self.out),
            "written": self.written,
            "already_there": self.existing,
            "rejected": self.rejected,
            "failed": self.failed,
            "seconds": round(seconds, 2),
            "seconds_per_item": round(seconds / max(1, len(self.written)), 3),
        }
        write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=1))
        duplicates = f", {len(self.failed)} duplicate keys not written" if self.failed else ""
        rank_zero_info(
            f"facegen predict: {len(self.written)} textures written to {self.out}, "
            f"{len(self.existing)} already there, {len(self.rejected)} photos skipped{duplicates}"
        )
