"""Prediction straight from a folder of photos: faces are detected and cropped exactly as ``facegen prepare``
does, in the dataloader workers, and batched with the crop transform needed to map results back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from facegen.data.batch import Reject
from facegen.data.detection.detectors import Detector, lazy_detector
from facegen.data.keys import face_key, frame_stem
from facegen.data.photos import Photo, PhotoInput
from facegen.data.prepare import CropOptions, process_photo
from facegen.data.streams import collate, reader_identity
from facegen.data.video import TruncatedVideo, UnreadableVideo, read_frames


class PhotoFolderStream(IterableDataset):
    """Batches of face crops from the photos and videos of ``source`` (folder, glob or tar; videos from folders
    and globs).

    Each batch is like a shard batch (``image`` (B, 3, S, S) uint8, ``landmarks``, ``mask``, ``key``, ``meta``
    with ``source`` and ``transform``) plus ``photo_path``: [B] the photo each face was cropped from (only this
    stream sets it: a shard's metadata never decides which file predict reads; None for video frames),
    ``photo_pixels``: [B] the video frame (H, W, 3) uint8 a face was cropped from (None for photos),
    ``dense_landmarks`` (B, N, 2) crop pixels when the detector gives dense points (NaN for faces without), and
    ``rejects``: :class:`~facegen.data.batch.Reject` records of the photos read since the previous batch. A
    final batch may hold no face, only rejects (B = 0).

    Videos come after the photos, each frame sampled at ``video_fps`` (None: every frame) treated as a photo
    named ``<video>#<frame index>`` with key stem ``<video key>_t<frame index>``; its faces' ``meta`` add
    ``video`` (the video's key stem), ``frame``, ``time`` (seconds) and ``fps``. A video is read by one
    dataloader worker, so its frames arrive in order.
    """

    def __init__(
        self,
        source: str,
        batch_size: int,
        crop: CropOptions | None = None,
        detector: Detector = "face-alignment",
        device: str = "cpu",
        video_fps: float | None = None,
    ) -> None:
        self.photos = PhotoInput(
            source, setting="data.predict_dir", videos=True
        )  # fails now, at setup, when nothing matches
        self.batch_size, self.crop, self.detector, self.device = (
            batch_size,
            crop or CropOptions(),
            detector,
            device,
        )
        self.video_fps = video_fps

    def _photo_path(self, name: str) -> str:
        if self.photos.kind == "dir":
            return str(Path(self.photos.spec, name).resolve())
        return str(Path(name).resolve()) if self.photos.kind == "glob" else f"{self.photos.spec}::{name}"

    def _items(self, reader: int, readers: int) -> Iterator[tuple[Photo, dict | None] | Reject]:
        """This reader's photos and video frames (with their video metadata), or rejects of unreadable ones."""
        photos = self.photos
        for index, photo in enumerate(photos.iter_photos()):
            if index % readers == reader:
                yield Reject(photo[0], "unreadable", photo[1]) if isinstance(photo, tuple) else (photo, None)
        for index, name in enumerate(photos.videos, start=len(photos.names)):
            if index % readers != reader:
                continue
            path, stem = photos.video_path(name), photos.keys[name]
            if path is None:
                yield Reject(name, "unreadable", "videos are read from folders, not from tar archives")
                continue
            try:
                for frame in read_frames(path, self.video_fps):
                    video = {"video": stem, "frame": frame.index, "time": frame.time, "fps": self.video_fps}
                    yield (
                        Photo(
                            f"{name}#{frame.index}", frame_stem(stem, frame.index), b"", pixels=frame.pixels
                        ),
                        video,
                    )
            except TruncatedVideo as error:  # its frames were read and go on; the summary says it ended early
                yield Reject(name, "video_truncated", str(error))
            except UnreadableVideo as error:
                yield Reject(name, "unreadable", str(error))

    def __iter__(self) -> Iterator[dict]:
        reader, readers = reader_identity()
        detector = lazy_detector(self.detector, self.device, setting="data.predict_detector")
        pending, rejects = [], []
        for item in self._items(reader, readers):
            if isinstance(item, Reject):
                rejects.append(item)
                continue
            photo, video = item
            result = process_photo(photo, detector, self.crop)
            rejects += [Reject(result.name, "face_dropped", detail) for detail in result.dropped]
            if result.reject:
                rejects.append(Reject(result.name, result.reject, result.detail, video))
            for face_index, face in enumerate(result.faces):
                meta = face.meta(result.name, face_index)
                mask = face.mask if face.mask is not None else np.full(face.crop.shape[:2], 255, np.uint8)
                pending.append(
                    {
                        "key": face_key(result.key, face_index),
                        "image": face.crop.transpose(2, 0, 1),
                        "landmarks": face.landmarks,
                        "confidence": face.confidence
                        if face.confidence is not None
                        else np.ones(len(face.landmarks), np.float32),
                        "mask": mask[None],
                        "meta": meta if video is None else {**meta, **video},
                        "photo_path": self._photo_path(result.name) if video is None else None,
                        "photo_pixels": photo.pixels,
                        "dense": face.dense,
                    }
                )
                if len(pending) == self.batch_size:
                    yield self._batch(pending, rejects)
                    pending, rejects = [], []
        if pending or rejects:
            yield self._batch(pending, rejects)

    def _batch(self, faces: list[dict], rejects: list[Reject]) -> dict:
        if faces:
            batch = collate(faces)
        else:
            size = self.crop.size
            batch = {
                "image": torch.zeros(0, 3, size, size, dtype=torch.uint8),
                "landmarks": torch.zeros(0, 68, 2),
                "confidence": torch.zeros(0, 68),
                "mask": torch.zeros(0, 1, size, size, dtype=torch.uint8),
                "key": [],
                "meta": [],
            }
        batch["photo_path"] = [face["photo_path"] for face in faces]
        batch["photo_pixels"] = [face["photo_pixels"] for face in faces]
        # faces without dense points (a landmark file, another backend) get NaN rows, which the fit ignores
        dense = [face["dense"] for face in faces]
        count = next((len(d) for d in dense if d is not None), None)
        if count is not None:
            missing = np.full((count, 2), np.nan, np.float32)
            rows = [d if d is not None and len(d) == count else missing for d in dense]
            batch["dense_landmarks"] = torch.from_numpy(np.stack(rows))
        batch["rejects"] = list(rejects)
        batch["skipped"] = torch.tensor(0)
        return batch
