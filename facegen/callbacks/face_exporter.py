"""``FaceExporter``: the prediction writer of ``facegen predict``. Writes one folder of meshes, textures,
coefficients and an overlay per face (see :mod:`facegen.export.face_files`) and a ``summary.json`` of the run."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from facegen.atomic import write_text_atomic
from facegen.data.batch import FaceBatch
from facegen.data.keys import OutputNames
from facegen.data.photos import UnreadableImage, read_photo
from facegen.errors import ConfigError
from facegen.export.face_files import DONE_FILE, FaceResult, ModelFiles, write_face
from facegen.export.files import child_folder
from facegen.export.outputs import DEFAULT_OUTPUTS, OUTPUTS, Output
from facegen.export.video_files import VideoRecords
from facegen.morphable.model import MorphableModel
from facegen.predictions import Reconstruction
from facegen.render.settings import Fragments
from facegen.signals import Stopped


class FaceExporter(BasePredictionWriter):
    """Writes ``out/<face name>/`` for every predicted face: the name is the face's key when that is a safe file
    name, else its readable part plus a hash of the key (:class:`facegen.data.keys.OutputNames`), so nothing is
    written outside ``out``; a key seen twice in one run is reported in ``failed``, never written over the first.

    Each face's folder is decided when its batch starts: faces already complete in ``out`` (unless
    ``overwrite``) and repeated keys are dropped from the batch then, so they are not encoded, fitted or written
    again. Files are written by ``writers`` background threads while the next batch computes (at most ``queue``
    faces wait); their heavy parts (PNG encoding, torch) release the GIL, so two threads keep 2 cores busy.

    Faces of video frames (``meta`` with ``video``) are written per frame like photos; with ``overlay`` among
    the outputs, each video also gets ``<video>_overlay.mp4``: the overlays of its first face, frame by frame,
    at the sampled frame rate (frames without a face are left out and listed as rejected).

    It reads only :class:`~facegen.predictions.Reconstruction` predictions and the face model it is given.

    Args:
        out: output folder.
        face_model: the face model of the predictions (triangles, UV layout, expression names).
        overwrite: rewrite faces whose folder is already complete; otherwise they are skipped and counted.
        texture_size: side of the UV textures in texels.
        outputs: what to write per face (of :data:`facegen.export.outputs.OUTPUTS`; default
            :data:`~facegen.export.outputs.DEFAULT_OUTPUTS`); ``code.json`` always.
        queue: faces computed ahead of the writer threads (bounds memory).
        writers: writer threads.
    """

    def __init__(
        self,
        out: str,
        face_model: MorphableModel,
        overwrite: bool = False,
        texture_size: int = 512,
        outputs: Sequence[Output] = DEFAULT_OUTPUTS,
        queue: int = 16,
        writers: int = 2,
    ) -> None:
        super().__init__(write_interval="batch")
        unknown = sorted(set(outputs) - set(OUTPUTS))
        if unknown:
            raise ConfigError(f"--outputs: unknown {unknown}; choose from {', '.join(OUTPUTS)}")
        self.out, self.overwrite, self.texture_size = Path(out), overwrite, texture_size
        self.outputs, self.queue, self.writers = frozenset(outputs), queue, writers
        self.model = ModelFiles.of(face_model, texture_size)
        self.face_model = face_model
        if not face_model.has_uv and {"texture", "albedo"} & self.outputs:
            rank_zero_warn(
                f"face model {face_model.name!r} has no UV layout: textured .obj files are not written"
            )
        self._reset()

    def _reset(self) -> None:
        self.written: list[str] = []
        self.existing: list[str] = []
        self.rejected: list[dict] = []  # photos that gave no face
        self.dropped: list[dict] = []  # faces left out of photos that gave others
        self.truncated: list[
            dict
        ] = []  # videos that ended before their declared frame count (frames read go on)
        self.failed: list[dict] = []
        self.diverged: list[dict] = []  # faces whose fit diverged (written with the encoder's code)
        self.implausible: list[dict] = []  # faces whose fit is implausible (not written)
        self.names = OutputNames()
        self._batch_names: list[str] = []
        self._pending: deque[tuple[str, str, Future]] = deque()
        self._refinement_steps = 0
        self._started = time.perf_counter()
        self.videos = VideoRecords()
        self._photos = RecentPhotos()

    def on_predict_start(self, trainer, pl_module) -> None:
        self._reset()
        self._pool = ThreadPoolExecutor(self.writers, thread_name_prefix="facegen-writer")
        self.out.mkdir(parents=True, exist_ok=True)

    def on_predict_batch_start(
        self, trainer, pl_module, batch: FaceBatch, batch_idx, dataloader_idx=0
    ) -> None:
        """Name each face's folder; drop faces already complete (unless overwriting) and repeated keys from
        ``batch`` (in place), before anything is computed for them."""
        keep, self._batch_names = [], []
        for i, key in enumerate(batch.key):
            name = self.names.name(key)
            meta = batch.meta[i]
            if name is not None and meta.get("video") is not None and meta.get("face_index", 0) == 0:
                self.videos.tracked(meta, name)
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
        batch.keep_only(keep)

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: Reconstruction,
        batch_indices,
        batch,
        batch_idx,
        dataloader_idx=0,
    ):
        self.write(prediction)

    def write(self, prediction: Reconstruction) -> None:
        """Queue every face of ``prediction`` for writing (its folder named by :meth:`on_predict_batch_start`)."""
        batch = prediction.batch
        for reject in batch.rejects:
            if reject.reason == "video_truncated":
                rank_zero_warn(f"{reject.detail}; its frames up to there are written")
            kind = {"face_dropped": self.dropped, "video_truncated": self.truncated}.get(
                reject.reason, self.rejected
            )
            kind.append({key: value for key, value in reject._asdict().items() if value is not None})
            if (
                reject.video is not None and reject.reason != "face_dropped"
            ):  # a frame where the face was lost
                self.videos.lost(reject.video)
        self._refinement_steps = max(self._refinement_steps, len(prediction.fit_loss))
        if len(batch) == 0:
            return
        if self.model.layout is not None:
            self.model.layout.to(batch.image.device)
        code, decoded, render = prediction.code, prediction.decoded, prediction.render
        photo_paths = batch.photo_path or [None] * len(batch)
        photo_pixels = batch.photo_pixels or [None] * len(batch)
        if prediction.fit_diverged is not None:
            reason = "the fit diverged (non-finite code): written with the encoder's code"
            self.diverged += [
                {"face": key, "reason": reason}
                for key, bad in zip(batch.key, prediction.fit_diverged.tolist(), strict=True)
                if bad
            ]
        reasons = prediction.fit_implausible or [None] * len(batch)
        for i, (key, name) in enumerate(zip(batch.key, self._batch_names, strict=True)):
            if reasons[i] is not None:  # reported, not written as a result
                self.implausible.append({"face": key, "reason": reasons[i]})
                continue
            one = slice(i, i + 1)
            face = FaceResult(
                key=key,
                code={k: v[one] for k, v in code.to_dict().items()},
                vertices_model=prediction.vertices_model[one],
                camera_rotation=prediction.camera_rotation[one],
                camera_translation=prediction.camera_translation[one],
                vertices=decoded.vertices[one],
                normals=decoded.normals[one],
                reflectance=decoded.albedo[one].clamp(0, 1),
                shaded=prediction.shaded[one].clamp(0, 1),
                landmarks=decoded.landmarks[one],
                landmarks_2d=prediction.landmarks_2d[one],
                detected=batch.landmarks[one],
                K=decoded.K[one],
                crop=batch.image[one],
                render=None if render is None else render.image[one],
                render_mask=None if render is None else render.mask[one],
                fragments=None
                if render is None
                else one_face(render.fragments, i, self.model.faces.shape[0]),
                meta={**batch.meta[i], "photo_path": photo_paths[i]},
                photo=photo_pixels[i],
                refinement=refinement(prediction, i),
            )
            future = self._pool.submit(self._write, child_folder(self.out, name), face)
            self._pending.append((key, name, future))
        while len(self._pending) > self.queue:
            self._collect()

    def _write(self, folder: Path, face: FaceResult) -> None:
        """Runs in the writer thread: read the original photo (unless the face came with it, as video frames
        do), then write every chosen file of ``face``."""
        path = face.meta.get("photo_path")
        if face.photo is None:
            try:
                photo = self._photos.read(path) if path else None
            except (OSError, UnreadableImage) as error:  # the photo moved since it was cropped: use the crop
                rank_zero_warn(f"{path}: {error}; texture and overlay use the crop")
                photo = None
            face = dataclasses.replace(face, photo=photo)
        with torch.inference_mode():
            write_face(folder, face, self.model, self.outputs)

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
        records, failed = self.videos.write(self.out, self.outputs, self.model, self.face_model)
        for failure in failed:
            rank_zero_warn(failure["error"])
        self.failed += failed
        self._write_summary(trainer, records)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Predict stopped (a signal, or an error): the faces being written are finished, the queued ones are
        dropped (a rerun writes them), and ``summary.json`` lists what was written and why the run stopped."""
        if not hasattr(self, "_pool") or trainer.state.fn != "predict":
            return
        for _, _, future in self._pending:
            future.cancel()
        self._pending = deque(entry for entry in self._pending if not entry[2].cancelled())
        while self._pending:
            self._collect()
        self._pool.shutdown()
        self._write_summary(
            trainer, [], stopped=type(exception).__name__ + (f" ({exception})" if str(exception) else "")
        )
        if isinstance(exception, Stopped):
            exception.done = (
                f"{len(self.written)} faces written to {self.out} (summary.json lists them); "
                "the same command writes the rest"
            )

    def _write_summary(self, trainer, videos: list[dict], stopped: str | None = None) -> None:
        seconds = time.perf_counter() - self._started
        summary = {
            "out": str(self.out),
            "stopped": stopped,
            "faces_written": len(self.written),
            "faces_already_there": len(self.existing),
            "photos_rejected": len(self.rejected),
            "faces_dropped": len(self.dropped),
            "faces_failed": len(self.failed),
            "faces_fit_diverged": len(self.diverged),
            "faces_fit_implausible": len(self.implausible),
            "seconds": round(seconds, 2),
            "seconds_per_face": round(seconds / max(1, len(self.written)), 3),
            "refinement_steps": self._refinement_steps,
            "outputs": sorted(self.outputs),
            "written": self.written,
            "already_there": self.existing,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "failed": self.failed,
            "fit_diverged": self.diverged,
            "fit_implausible": self.implausible,
            "videos": videos,
            "videos_truncated": self.truncated,
        }
        if trainer.world_size > 1:
            summary["rank"] = trainer.global_rank
        name = "summary.json" if trainer.world_size == 1 else f"summary-rank{trainer.global_rank}.json"
        write_text_atomic(self.out / name, json.dumps(summary, indent=1))
        if stopped is None:
            self._report(summary)

    def _report(self, summary: dict) -> None:
        reasons = ", ".join(f"{r['photo']} ({r['reason']})" for r in self.rejected[:10])
        rank_zero_info(
            f"facegen predict: {len(self.written)} faces written to {self.out} "
            f"({summary['seconds_per_face']} s per face), {len(self.existing)} already there "
            f"(--overwrite true to redo), {len(self.rejected)} photos skipped"
            + (f": {reasons}" if reasons else "")
            + (
                f", {len(self.dropped)} faces left out of photos (summary.json says why)"
                if self.dropped
                else ""
            )
            + (f", {len(self.failed)} failed to write" if self.failed else "")
            + (f", {len(self.diverged)} fits diverged (summary.json lists them)" if self.diverged else "")
            + (
                f", {len(self.implausible)} implausible fits not written (summary.json says why)"
                if self.implausible
                else ""
            )
        )


class RecentPhotos:
    """Decoded photos shared by the writer threads: the faces of one photo are written one after another, so
    each photo is decoded once, not once per face. Holds the ``keep`` most recently asked for; the arrays are
    read-only (they are shared)."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._photos: OrderedDict[str, Future] = OrderedDict()

    def read(self, path: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB of ``path`` (:func:`~facegen.data.photos.read_photo`), decoded by the first thread
        to ask; raises what that raised."""
        with self._lock:
            entry = self._photos.get(path)
            first = entry is None
            if first:
                entry = self._photos[path] = Future()
                while len(self._photos) > self.keep:
                    self._photos.popitem(last=False)
        if first:
            try:
                photo = read_photo(path)
                photo.setflags(write=False)
                entry.set_result(photo)
            except BaseException as error:  # handed to every face of the photo, raised below
                entry.set_exception(error)
        return entry.result()


def one_face(fragments: Fragments, index: int, num_faces: int) -> Fragments:
    """Face ``index`` of a batch's ``fragments``, re-packed as a batch of one (``pix_to_face`` counts from 0)."""
    pix_to_face = fragments.pix_to_face[index : index + 1]
    pix_to_face = torch.where(pix_to_face >= 0, pix_to_face - index * num_faces, pix_to_face)
    return Fragments(pix_to_face, fragments.bary[index : index + 1], fragments.zbuf[index : index + 1])


def refinement(prediction: Reconstruction, index: int) -> tuple[int, float, float] | None:
    """(steps, loss before, loss after) of face ``index``'s own objective, or None when it was not refined."""
    if prediction.face_loss is None:
        return None
    first, last = prediction.face_loss[index].tolist()
    return len(prediction.fit_loss), first, last
