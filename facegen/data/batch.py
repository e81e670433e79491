"""What the data modules yield: :class:`FaceBatch` (face crops with landmarks, from shards or photos) and
:class:`SeedBatch` (seeds, to generate from). Workers build plain dicts of uint8 arrays (cheap to send between
processes); :meth:`FaceBatch.from_loader` turns one into the typed batch on the device.

Pixel convention: (x, y) with (0, 0) at the centre of the top-left pixel (OpenCV), in crop pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor


class Reject(NamedTuple):
    """A photo that gave no face: its file, a short ``reason`` (e.g. ``no face``, ``unreadable``) and details;
    for a video's frame, its ``video`` metadata (``video`` key stem, ``frame``, ``time``, ``fps``)."""

    photo: str
    reason: str
    detail: str
    video: dict | None = None


@dataclass
class FaceBatch:
    """B face crops of S x S pixels.

    Attributes:
        image: (B, 3, S, S) float in [0, 1].
        landmarks: (B, 68, 2) float, iBUG-68 points in crop pixels (detected, or the synthetic ground truth).
        confidence: (B, 68) float in [0, 1], the detector's confidence in each landmark (ones for landmark
            files, synthetic faces and backends without one); None: all ones.
        mask: (B, 1, S, S) float in [0, 1], the face region the losses compare.
        key: B unique sample keys.
        meta: B dicts of sample metadata (``source``, ``bbox``, ``transform`` photo -> crop pixels, ...).
        params: synthetic ground truth, {code part: (B, k)} (:class:`facegen.decoder.FaceCode`'s parts, plus
            ``focal`` (B, 1) in pixels); None for real photos and for augmented batches.
        photo_path: B source photos, when predicting from a photo folder (never taken from shard metadata).
        photo_pixels: B original images (H, W, 3) uint8 RGB where they are not files (video frames), else None.
        dense_landmarks: (B, N, 2) float crop pixels of a dense landmark scheme (MediaPipe's 468) when the
            detector gave them (NaN rows for faces without), else None.
        rejects: photos of this batch that gave no face (predicting from photos).
        skipped: bad samples the reader dropped since the previous batch.
    """

    image: Tensor
    landmarks: Tensor
    mask: Tensor
    key: list[str]
    meta: list[dict]
    params: dict[str, Tensor] | None = None
    photo_path: list[str | None] | None = None
    photo_pixels: list | None = None
    rejects: list[Reject] = field(default_factory=list)
    skipped: int = 0
    confidence: Tensor | None = None
    dense_landmarks: Tensor | None = None

    def __len__(self) -> int:
        return self.image.shape[0]

    @property
    def size(self) -> int:
        """S, the side of the crops in pixels."""
        return self.image.shape[-1]

    @classmethod
    def from_loader(cls, raw: dict) -> FaceBatch:
        """The batch of a loader's dict: ``image`` and ``mask`` uint8 (0-255) become float in [0, 1]."""
        return cls(
            image=raw["image"].float() / 255,
            landmarks=raw["landmarks"].float(),
            mask=raw["mask"].float() / 255,
            key=list(raw["key"]),
            meta=list(raw["meta"]),
            params=raw.get("params"),
            photo_path=raw.get("photo_path"),
            photo_pixels=None
            if raw.get("photo_pixels") is None  # the loader turns the arrays into tensors
            else [p.numpy() if isinstance(p, Tensor) else p for p in raw["photo_pixels"]],
            rejects=[Reject(*reject) for reject in raw.get("rejects", [])],
            skipped=int(raw.get("skipped", 0)),
            confidence=raw["confidence"].float() if "confidence" in raw else None,
            dense_landmarks=raw["dense_landmarks"].float() if "dense_landmarks" in raw else None,
        )

    def take(self, indices: Sequence[int]) -> FaceBatch:
        """A new batch of the faces at ``indices`` (in that order); ``rejects`` and ``skipped`` stay."""
        index = torch.as_tensor(list(indices), dtype=torch.long, device=self.image.device)

        def rows(tensor: Tensor) -> Tensor:
            return tensor.index_select(0, index.to(tensor.device))

        return dataclasses.replace(
            self,
            image=rows(self.image),
            landmarks=rows(self.landmarks),
            mask=rows(self.mask),
            key=[self.key[i] for i in indices],
            meta=[self.meta[i] for i in indices],
            params=None if self.params is None else {k: rows(v) for k, v in self.params.items()},
            photo_path=None if self.photo_path is None else [self.photo_path[i] for i in indices],
            photo_pixels=None if self.photo_pixels is None else [self.photo_pixels[i] for i in indices],
            confidence=None if self.confidence is None else rows(self.confidence),
            dense_landmarks=None if self.dense_landmarks is None else rows(self.dense_landmarks),
        )

    def keep_only(self, indices: Sequence[int]) -> None:
        """Drop every face but those at ``indices``, in place (prediction writers skip faces this way before
        the task computes anything for them)."""
        if list(indices) != list(range(len(self))):
            self.__dict__.update(self.take(indices).__dict__)


class SeedBatch(NamedTuple):
    """seeds: (B,) long, one generated sample per seed (the same seed gives the same sample); ``real``:
    (B, 3, H, W) float in [0, 1], real face photos beside them (``SeedDataModule(real=...)``), or None."""

    seeds: Tensor
    real: Tensor | None = None


class InputSpec(NamedTuple):
    """What a task expects of its face crops; the one source of these settings (data modules follow it).

    Attributes:
        image_size: S, the side of the crops in pixels.
        face_model: the face model (``builtin`` or a canonical ``.npz``) that synthetic faces are rendered with.
        fov: the camera's horizontal field of view in degrees.
        fill: the framing, the jaw's width as a fraction of the crop's (:mod:`facegen.geometry.framing`).
    """

    image_size: int
    face_model: str
    fov: float
    fill: float
