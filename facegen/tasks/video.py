"""Faces of video frames tied together in time (``facegen predict`` on videos): one identity per video and
smoothed pose, expression and light, computed online batch after batch (a video's frames arrive in order;
:class:`facegen.data.photo_stream.PhotoFolderStream`).

A face is followed across frames by its video and its index in the frame (faces are ordered largest first), so
a video of one person gives one track.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from facegen.data.batch import FaceBatch
from facegen.decoder.code import FaceCode
from facegen.errors import ConfigError, check_choice

Identity = Literal["shared", "per_frame"]
#: Code parts smoothed in time.
SMOOTHED = ("rotation", "translation", "expression", "light")


@dataclass
class VideoOptions:
    """How the faces of a video's frames are tied together.

    Attributes:
        identity: ``shared``: every frame gets the mean identity (shape and albedo) of the track's fitted frames
            so far, which stops changing once ``identity_frames`` frames have contributed; pose and expression
            are then fitted again to the frame's landmarks with that identity (the fit's landmark stage, when
            it has one). ``per_frame``: each frame keeps its own.
        smoothing: weight of the past in an exponential moving average, over a track's frames, of pose,
            expression and light (0: none; 0.5 halves uncorrelated frame-to-frame jitter of a still face,
            at a lag of about one frame).
        identity_frames: frames whose fits make up a track's identity.
    """

    identity: Identity = "shared"
    smoothing: float = 0.5
    identity_frames: int = 30

    def __post_init__(self) -> None:
        check_choice("model.video.identity", self.identity, Identity)
        if not 0 <= self.smoothing < 1 or self.identity_frames < 1:
            raise ConfigError(
                "model.video: smoothing must be in [0, 1) and identity_frames >= 1, got "
                f"smoothing={self.smoothing}, identity_frames={self.identity_frames}"
            )


@dataclass
class _Track:
    """One face followed through a video: its identity sums and the last smoothed parts."""

    count: int = 0
    shape: Tensor | None = None
    albedo: Tensor | None = None
    last: dict[str, Tensor] = field(default_factory=dict)

    def add(self, shape: Tensor, albedo: Tensor) -> None:
        self.shape = shape if self.shape is None else self.shape + shape
        self.albedo = albedo if self.albedo is None else self.albedo + albedo
        self.count += 1


class VideoTracks:
    """The tracks of one prediction run (:meth:`reset` at its start)."""

    def __init__(self, options: VideoOptions) -> None:
        self.options = options
        self.tracks: dict[tuple[str, int], _Track] = {}

    def reset(self) -> None:
        self.tracks = {}

    def apply(
        self, batch: FaceBatch, code: FaceCode, refit: Callable[[FaceBatch, FaceCode], FaceCode]
    ) -> FaceCode:
        """``code`` (B faces of ``batch``, fitted frame by frame) with the faces of video frames given their
        track's identity, refitted by ``refit(faces, code)`` (pose and expression, the identity kept), and
        smoothed in time; faces of photos are returned unchanged."""
        rows = [i for i, meta in enumerate(batch.meta) if meta.get("video") is not None]
        if not rows:
            return code
        parts = {name: value.clone() for name, value in code.to_dict().items()}
        keys = [(batch.meta[i]["video"], int(batch.meta[i].get("face_index", 0))) for i in rows]
        if self.options.identity == "shared":
            for i, key in zip(rows, keys, strict=True):
                track = self.tracks.setdefault(key, _Track())
                if track.count < self.options.identity_frames:
                    track.add(parts["shape"][i], parts["albedo"][i])
            for i, key in zip(rows, keys, strict=True):
                track = self.tracks[key]
                parts["shape"][i] = track.shape / track.count
                parts["albedo"][i] = track.albedo / track.count
            index = torch.as_tensor(rows, device=code.shape.device)
            refitted = refit(batch.take(rows), FaceCode(**{k: v[index] for k, v in parts.items()}))
            for name, value in refitted.to_dict().items():
                parts[name][index] = value.to(parts[name])
        alpha = self.options.smoothing
        for i, key in zip(rows, keys, strict=True):
            track = self.tracks.setdefault(key, _Track())
            for name in SMOOTHED:
                previous = track.last.get(name)
                if previous is not None and alpha > 0:
                    parts[name][i] = alpha * previous + (1 - alpha) * parts[name][i]
                track.last[name] = parts[name][i].clone()
        return FaceCode(**parts)
