"""What ``facegen predict`` writes per video once its frames are written (:class:`VideoRecords`):
``<video>_overlay.mp4`` of the frames' overlays, ``<video>_blendshapes.csv`` and ``.json`` (ARKit blendshape
curves, :mod:`facegen.export.arkit`) and, with ``glb`` among the outputs, ``<video>_animation.glb`` (the face with
its expressions and head rotation animated, :mod:`facegen.export.gltf`)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from facegen.atomic import write_bytes_atomic, write_text_atomic
from facegen.errors import ConfigError
from facegen.export.arkit import TrackedFrame, curves
from facegen.export.face_files import DONE_FILE, ModelFiles
from facegen.export.files import child_folder, write_video_atomic
from facegen.export.gltf import GltfAnimation, glb_bytes
from facegen.export.outputs import Output
from facegen.geometry.normals import vertex_normals
from facegen.morphable.model import MorphableModel


class _Destination(NamedTuple):
    out: Path
    outputs: Collection[Output]
    model: ModelFiles
    face_model: MorphableModel


class VideoRecords:
    """The frames of each video of a predict run: those whose face was written (by folder name) and those where
    the face was lost; :meth:`write` writes the per-video files from them at the end of the run."""

    def __init__(self) -> None:
        self._tracked: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
        self._lost: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._fps: dict[str, float | None] = {}

    def tracked(self, meta: dict, name: str) -> None:
        """A frame whose face is written in folder ``name``; ``meta``: the face's video metadata."""
        self._tracked[meta["video"]].append((meta["frame"], meta["time"], name))
        self._fps[meta["video"]] = meta.get("fps")

    def lost(self, video: dict) -> None:
        """A frame (its video metadata) where no face was found."""
        self._lost[video["video"]].append((video["frame"], video["time"]))
        self._fps[video["video"]] = video.get("fps")

    def write(
        self, out: Path, outputs: Collection[Output], model: ModelFiles, face_model: MorphableModel
    ) -> tuple[list[dict], list[dict]]:
        """Per video: the record for ``summary.json`` (its frames with a face, the files written, why curves were
        not) and the failures to write, after writing its overlay video, curves and animation into ``out``."""
        import cv2

        where = _Destination(out, outputs, model, face_model)
        records, failed = [], []
        for video in sorted(set(self._tracked) | set(self._lost)):
            frames = sorted(self._tracked.get(video, []))
            times = sorted([time for _, time, _ in frames] + [time for _, time in self._lost.get(video, [])])
            # the rate of the frames read (a rate asked above the video's own reads every frame)
            fps = frame_rate(times) if len(times) > 1 else self._fps.get(video) or frame_rate(times)
            record = {"video": video, "frames_with_face": len(frames), "overlay_video": None}
            record.update(self._write_curves(where, video, frames, fps))
            overlays = [child_folder(out, name) / "overlay.jpg" for _, _, name in frames]
            overlays = [path for path in overlays if path.is_file()]
            if overlays and "overlay" in outputs:
                pictures = (cv2.imread(str(path))[..., ::-1] for path in overlays)
                target = child_folder(out, f"{video}_overlay.mp4")  # video: a key stem, safe
                try:
                    write_video_atomic(target, pictures, fps)
                    record["overlay_video"] = target.name
                except OSError as error:
                    failed.append(
                        {"face": video, "error": f"{target}: could not write the overlay video ({error})"}
                    )
            records.append(record)
        return records, failed

    def _write_curves(
        self, where: _Destination, video: str, frames: list[tuple[int, float, str]], fps: float
    ) -> dict:
        """``<video>_blendshapes.csv`` and ``.json`` from the frames' ``code.json``, lost frames marked, and with
        ``glb`` among the outputs the animation (:meth:`_write_animation`); returns their names, or why there are
        no curves (a model without ARKit-named expressions)."""
        tracked, records = [], []
        for frame, seconds, name in frames:
            path = child_folder(where.out, name) / DONE_FILE
            if not path.is_file():
                continue
            record = json.loads(path.read_text())
            expression = record["expression"]
            weights = np.asarray(list(expression.values()) if isinstance(expression, dict) else expression)
            pose = record["pose_degrees"]
            head = tuple(math.radians(pose[axis]) for axis in ("yaw", "pitch", "roll"))
            tracked.append(TrackedFrame(frame, seconds, weights, head))
            records.append((name, record))
        written = {}
        if "glb" in where.outputs and records and where.model.expression_deltas is not None:
            written["animation"] = _write_animation(where, video, tracked, records)
        lost = [TrackedFrame(frame, seconds, None, None) for frame, seconds in self._lost.get(video, [])]
        try:
            table, document = curves(
                sorted(tracked + lost, key=lambda f: f.frame), where.model.expression_names, fps
            )
        except ConfigError as error:
            return {**written, "blendshapes": None, "blendshapes_skipped": str(error)}
        target = child_folder(where.out, f"{video}_blendshapes.csv")  # video: a key stem, safe
        write_text_atomic(target, table)
        write_text_atomic(target.with_suffix(".json"), json.dumps({"video": video, **document}, indent=1))
        return {**written, "blendshapes": target.name, "frames_lost": len(lost)}


def _write_animation(
    where: _Destination, video: str, tracked: list[TrackedFrame], records: list[tuple[str, dict]]
) -> str:
    """``<video>_animation.glb``: the video's face (its one identity; the first frame's texture when written) with
    the expression weights and the head's rotation of every tracked frame as a glTF animation (linear between
    tracked frames)."""
    model = where.model
    first_name, first = records[0]
    with torch.no_grad():
        neutral = where.face_model(shape=torch.tensor([first["shape"]], dtype=torch.float32)).vertices[0]
    texture = child_folder(where.out, first_name) / "texture.png"
    normals = vertex_normals(neutral[None], torch.from_numpy(model.faces))[0].numpy()
    texture_png = texture.read_bytes() if texture.is_file() else None
    mesh = model.gltf_mesh(neutral.double().numpy(), normals, tracked[0].expression, texture_png)
    flip = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes -> glTF's (Y up, toward the viewer)
    rotations = np.stack([flip @ np.asarray(r["camera_from_model"]["rotation"]) for _, r in records])
    times = np.asarray([f.time for f in tracked]) - tracked[0].time
    animation = GltfAnimation(times, np.stack([f.expression for f in tracked]), rotations)
    target = child_folder(where.out, f"{video}_animation.glb")  # video: a key stem, safe
    write_bytes_atomic(target, glb_bytes(mesh, animation))
    return target.name


def frame_rate(times: list[float]) -> float:
    """Frames per second of frames at ``times`` (seconds, sorted): from their median spacing; 25 for one."""
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
    return 1.0 / gaps[len(gaps) // 2] if gaps else 25.0
