"""``TextureExporter``: the prediction writer of the texture model. Per generated seed (``seed_<n>/``) or
reconstructed face (``<face key>/``): the complete UV ``texture.png``, ``textured.obj`` + ``.mtl`` (the mean
shape for seeds, the fitted shape for photos, in model space), a picture (``views.png``: three viewpoints;
``side_by_side.png``: photo | render | two novel views) and, for photos, ``fit.json`` (PSNR/SSIM/L1 on visible
pixels, loss before/after). ``summary.json`` at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from facegen.callbacks.visuals import to_uint8
from facegen.data.keys import OutputNames
from facegen.decoder import FaceCode
from facegen.export.files import child_folder, write_png_atomic, write_text_atomic
from facegen.export.obj import write_textured_obj
from facegen.geometry.camera import transform_points
from facegen.geometry.sh import ambient_sh

#: Yaw angles (radians) of the novel views.
VIEWS = (-0.6, 0.0, 0.6)


class TextureExporter(BasePredictionWriter):
    """Writes ``out/<name>/`` per prediction; complete folders (with their json) are skipped unless ``overwrite``.
    ``texture_size``: side of the written textures (resampled when it differs from the generator's)."""

    def __init__(self, out: str, overwrite: bool = False, texture_size: int | None = None) -> None:
        super().__init__(write_interval="batch")
        self.out, self.overwrite, self.texture_size = Path(out), overwrite, texture_size
        self.written: list[str] = []
        self.existing: list[str] = []
        self.rejected: list[dict] = []
        self.failed: list[dict] = []
        self.names = OutputNames()

    def on_predict_start(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.written, self.existing, self.rejected, self.failed = [], [], [], []
        self.names = OutputNames()
        self._started = time.perf_counter()
        model = pl_module.mofa.decoder.model
        self.faces = model.faces.cpu().numpy()
        self.uv = (model.uv_coords.cpu().numpy(), model.uv_faces.cpu().numpy())

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ):
        decoder, model = pl_module.mofa.decoder, pl_module.mofa.decoder.model
        if prediction["kind"] == "generated":
            texture = prediction["texture"]
            names = [f"seed_{seed:06d}" for seed in prediction["seed"]]
            vertices = model.mean.expand(texture.shape[0], -1, -1)
            records = [{"seed": seed, "truncation": pl_module.truncation} for seed in prediction["seed"]]
            pictures = [
                novel_views(decoder, vertices[i : i + 1], texture[i : i + 1]) for i in range(len(names))
            ]
            picture_name, record_name = "views.png", "generated.json"
        else:
            self.rejected += [{"photo": p, "reason": r, "detail": d} for p, r, d in batch.get("rejects", [])]
            if prediction["texture"] is None:
                return
            texture, condition = prediction["texture"], prediction["condition"]
            names = list(batch["key"])
            vertices = model(shape=condition.code.shape, expression=condition.code.expression).vertices
            rendered = pl_module.render(texture, condition)
            history, metrics = prediction["fit_loss"], prediction["metrics"]
            records = [{"source": (batch.get("meta") or [{}] * len(names))[i].get("source"),
                        "loss_first": history[0] if history else None, "loss_last": history[-1] if history else None,
                        **{k: float(v[i]) for k, v in metrics.items()}} for i in range(len(names))]  # fmt: skip
            pictures = [
                torch.cat([condition.image[i], rendered[i], novel_views(decoder, vertices[i : i + 1], texture[i : i + 1],
                                                                        VIEWS[::2])], 2)
                for i in range(len(names))
            ]  # fmt: skip
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
            write_png_atomic(folder / "texture.png", to_uint8(self._resized(texture[i])))
            write_textured_obj(
                folder / "textured.obj", vertices[i].cpu().numpy(), self.faces, *self.uv, "texture.png"
            )
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
        summary = {"out": str(self.out), "written": self.written, "already_there": self.existing,
                   "rejected": self.rejected, "failed": self.failed, "seconds": round(seconds, 2),
                   "seconds_per_item": round(seconds / max(1, len(self.written)), 3)}  # fmt: skip
        write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=1))
        rank_zero_info(f"facegen predict: {len(self.written)} textures written to {self.out}, "
                       f"{len(self.existing)} already there, {len(self.rejected)} photos skipped"
                       + (f", {len(self.failed)} duplicate keys not written" if self.failed else ""))  # fmt: skip


@torch.no_grad()
def novel_views(decoder, vertices: Tensor, texture: Tensor, yaws: tuple[float, ...] = VIEWS) -> Tensor:
    """Model-space ``vertices`` (1, V, 3) with UV ``texture`` (1, 3, R, R) rendered in the default framing at each
    yaw, under soft frontal light, side by side: (3, S, S * len(yaws))."""
    count = len(yaws)
    code = decoder.layout().zeros(count)._replace(rotation=torch.tensor([[0.0, yaw, 0.0] for yaw in yaws]))
    rotation, translation = decoder.camera_pose(FaceCode(*(part.to(vertices.device) for part in code)))
    camera = transform_points(vertices.expand(count, -1, -1), rotation, translation)
    light = ambient_sh(count, 0.9, vertices.device)
    light.view(count, 3, 9)[:, :, 2] = -0.3  # from the camera's side
    model = decoder.model
    image = decoder.renderer(camera, model.faces, decoder.intrinsics.expand(count, 3, 3),
                             texture=texture.expand(count, -1, -1, -1), uv_coords=model.uv_coords,
                             uv_faces=model.uv_faces, sh_coeffs=light, background=1.0).image  # fmt: skip
    return torch.cat(list(image), 2)
