"""``FaceExporter``: the prediction writer of ``facegen predict``. Writes one folder of meshes, textures,
coefficients and an overlay per face (see :mod:`facegen.export.face_files`) and a ``summary.json`` of the run."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from facegen.data.keys import OutputNames
from facegen.data.photos import UnreadableImage, read_photo
from facegen.errors import ConfigError
from facegen.export.face_files import DONE_FILE, FaceResult, write_face
from facegen.export.files import child_folder, write_text_atomic
from facegen.export.outputs import OUTPUTS, Output
from facegen.texture.uv import UVLayout


class FaceExporter(BasePredictionWriter):
    """Writes ``out/<face name>/`` for every predicted face: the name is the face's key when that is a safe file
    name, else its readable part plus a hash of the key (:class:`facegen.data.keys.OutputNames`), so nothing is
    written outside ``out``; a key seen twice in one run is reported in ``failed``, never written over the first.

    Each face's folder is decided when its batch starts: faces already complete in ``out`` (unless
    ``overwrite``) and repeated keys are dropped from the batch then, so they are not encoded, fitted or written
    again. Files are written by a background thread while the next batch computes (at most ``queue`` faces wait).

    Args:
        out: output folder.
        overwrite: rewrite faces whose folder is already complete; otherwise they are skipped and counted.
        texture_size: side of the UV textures in texels.
        outputs: what to write per face (:data:`facegen.export.outputs.OUTPUTS`); ``code.json`` always.
        queue: faces computed ahead of the writer thread (bounds memory).
    """

    def __init__(self, out: str, overwrite: bool = False, texture_size: int = 512,
                 outputs: Sequence[Output] = OUTPUTS, queue: int = 16) -> None:  # fmt: skip
        super().__init__(write_interval="batch")
        unknown = sorted(set(outputs) - set(OUTPUTS))
        if unknown:
            raise ConfigError(f"--outputs: unknown {unknown}; choose from {', '.join(OUTPUTS)}")
        self.out, self.overwrite, self.texture_size = Path(out), overwrite, texture_size
        self.outputs, self.queue = frozenset(outputs), queue
        self.layout: UVLayout | None = None
        self.symmetric = False
        self.faces: np.ndarray | None = None  # (F, 3) and the UV layout as numpy, set when prediction starts
        self.uv: tuple[np.ndarray, np.ndarray] | None = None
        self._reset()

    def _reset(self) -> None:
        self.written: list[str] = []
        self.existing: list[str] = []
        self.rejected: list[dict] = []
        self.failed: list[dict] = []
        self.names = OutputNames()
        self._batch_names: list[str] = []
        self._pending: deque[tuple[str, str, Future]] = deque()
        self._started = time.perf_counter()

    def on_predict_start(self, trainer, pl_module) -> None:
        self._reset()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="facegen-writer")
        self.out.mkdir(parents=True, exist_ok=True)
        model = pl_module.decoder.model
        self.faces = model.faces.cpu().numpy()
        self.uv = (model.uv_coords.cpu().numpy(), model.uv_faces.cpu().numpy()) if model.has_uv else None
        if model.has_uv:
            self.layout = UVLayout(model.faces, model.uv_coords, model.uv_faces, self.texture_size)
            self.layout.to(pl_module.device)
            self.symmetric = self.layout.is_symmetric(model.mean.to(pl_module.device))
        elif {"texture", "albedo"} & self.outputs:
            rank_zero_warn(f"face model {model.name!r} has no UV layout: textured .obj files are not written")

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        """Name each face's folder; drop faces already complete (unless overwriting) and repeated keys from
        ``batch`` (in place), before anything is computed for them."""
        keep, self._batch_names = [], []
        for i, key in enumerate(batch["key"]):
            name = self.names.name(key)
            if name is None:
                self.failed.append(
                    {"face": key, "error": "duplicate key: an earlier face of this run has it"}
                )
                rank_zero_warn(f"face key {key!r} appears twice in the input; only the first is written")
            elif (child_folder(self.out, name) / DONE_FILE).exists() and not self.overwrite:
                self.existing.append(name)
            else:
                keep.append(i)
                self._batch_names.append(name)
        if len(keep) < len(batch["key"]):
            _select_faces(batch, keep)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ):
        self.rejected += [{"photo": p, "reason": r, "detail": d} for p, r, d in batch.get("rejects", [])]
        decoder = pl_module.decoder
        code, decoded = prediction["code"], prediction["decoded"]
        if code.batch_size == 0:
            return
        geometry = decoder.model(shape=code.shape, expression=code.expression).vertices
        rotation, translation = decoder.camera_pose(code)
        shaded = decoder.vertex_colours(decoded, code.light)
        render = decoder.render(decoded, code.light, background=0.0)
        expression_names = decoder.model.expression_names
        photo_paths = batch.get("photo_path") or [None] * len(batch["key"])
        for i, (key, name) in enumerate(zip(batch["key"], self._batch_names, strict=True)):
            meta = {**(batch["meta"][i] if "meta" in batch else {}), "photo_path": photo_paths[i]}
            one = slice(i, i + 1)
            face = FaceResult(
                key=key, code={k: v[one] for k, v in code.to_dict().items()}, vertices_model=geometry[one],
                camera_rotation=rotation[one], camera_translation=translation[one], vertices=decoded.vertices[one],
                normals=decoded.normals[one], reflectance=decoded.albedo[one].clamp(0, 1),
                shaded=shaded[one].clamp(0, 1), landmarks=decoded.landmarks[one], detected=batch["landmarks"][one],
                K=decoded.K[one], crop=batch["image"][one], render=render.image[one], render_mask=render.mask[one],
                meta=meta, photo=None, refine_loss=prediction.get("refine_loss", []),
            )  # fmt: skip
            future = self._pool.submit(self._write, child_folder(self.out, name), face, expression_names)
            self._pending.append((key, name, future))
        while len(self._pending) > self.queue:
            self._collect()

    def _write(self, folder: Path, face: FaceResult, expression_names: list[str] | None) -> None:
        """Runs in the writer thread: read the original photo, then write every chosen file of ``face``."""
        path = face.meta.get("photo_path")
        try:
            photo = read_photo(path) if path else None
        except (OSError, UnreadableImage) as error:  # the photo moved since it was cropped: use the crop
            rank_zero_warn(f"{path}: {error}; texture and overlay use the crop")
            photo = None
        face = dataclasses.replace(face, photo=photo)
        with torch.inference_mode():
            write_face(
                folder, face, self.faces, self.layout, self.symmetric, self.uv, expression_names, self.outputs
            )

    def _collect(self) -> None:
        """Wait for the oldest queued face; record it as written or failed (an error other than a file-system
        one is a bug and is raised here)."""
        key, name, future = self._pending.popleft()
        try:
            future.result()
        except OSError as error:
            self.failed.append({"face": key, "error": str(error)})
            rank_zero_warn(f"{self.out / name}: could not write ({error}); continuing with the next face")
            return
        self.written.append(name)

    def on_predict_end(self, trainer, pl_module) -> None:
        while self._pending:
            self._collect()
        self._pool.shutdown()
        seconds = time.perf_counter() - self._started
        summary = {
            "out": str(self.out),
            "faces_written": len(self.written),
            "faces_already_there": len(self.existing),
            "photos_rejected": len(self.rejected),
            "faces_failed": len(self.failed),
            "seconds": round(seconds, 2),
            "seconds_per_face": round(seconds / max(1, len(self.written)), 3),
            "refinement_steps": pl_module.refine.steps,
            "outputs": sorted(self.outputs),
            "written": self.written,
            "already_there": self.existing,
            "rejected": self.rejected,
            "failed": self.failed,
        }
        if trainer.world_size > 1:
            summary["rank"] = trainer.global_rank
        name = "summary.json" if trainer.world_size == 1 else f"summary-rank{trainer.global_rank}.json"
        write_text_atomic(self.out / name, json.dumps(summary, indent=1))
        reasons = ", ".join(f"{r['photo']} ({r['reason']})" for r in self.rejected[:10])
        rank_zero_info(
            f"facegen predict: {len(self.written)} faces written to {self.out} "
            f"({summary['seconds_per_face']} s per face), {len(self.existing)} already there "
            f"(--overwrite true to redo), {len(self.rejected)} photos skipped"
            + (f": {reasons}" if reasons else "")
            + (f", {len(self.failed)} failed to write" if self.failed else "")
        )


def _select_faces(batch: dict, keep: list[int]) -> None:
    """Keep only faces ``keep`` of ``batch`` (in place): every tensor and list with one entry per face."""
    count = len(batch["key"])
    index = torch.tensor(keep, dtype=torch.long)
    for name, value in list(batch.items()):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == count:
            batch[name] = value.index_select(0, index.to(value.device))
        elif isinstance(value, list) and len(value) == count and name != "rejects":
            batch[name] = [value[i] for i in keep]
        elif isinstance(value, dict) and name == "params":
            batch[name] = {k: v.index_select(0, index.to(v.device)) for k, v in value.items()}
