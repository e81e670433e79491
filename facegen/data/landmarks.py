"""Readers of the files that store 68 iBUG landmarks (:mod:`facegen.geometry.landmarks`).

Pixel convention everywhere in facegen: (x, y) with (0, 0) at the centre of the top-left pixel (OpenCV).
300-W ``.pts`` files count from 1 (Matlab); they are shifted by -1 when read.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from facegen.atomic import write_text_atomic
from facegen.geometry.landmarks import NUM_LANDMARKS


class LandmarkFileError(ValueError):
    """A landmark file that cannot be read; the message names the file and what is wrong."""


def check_landmarks(landmarks: np.ndarray, source: str) -> np.ndarray:
    """``landmarks`` as float32 (68, 2); raises :class:`LandmarkFileError` naming ``source`` otherwise."""
    array = np.asarray(landmarks, dtype=np.float32)
    if array.shape != (NUM_LANDMARKS, 2):
        raise LandmarkFileError(f"{source}: expected 68 landmarks of shape (68, 2), got {array.shape}")
    if not np.isfinite(array).all():
        raise LandmarkFileError(f"{source}: landmarks contain NaN or inf")
    return array


def write_pts(path: str | Path, landmarks: np.ndarray) -> None:
    """A 300-W ``.pts`` file (1-based pixels) of 0-based ``landmarks`` (68, 2)."""
    rows = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in np.asarray(landmarks, dtype=np.float64))
    write_text_atomic(path, f"version: 1\nn_points: 68\n{{\n{rows}\n}}\n")


def read_pts(path: str | Path, text: str | None = None) -> np.ndarray:
    """Landmarks (68, 2) float32, 0-based pixels, from a 300-W ``.pts`` file (or its ``text``)."""
    text = Path(path).read_text() if text is None else text
    body = text.split("{", 1)[-1].split("}", 1)[0] if "{" in text else ""
    try:
        values = [float(v) for v in body.split()]
    except ValueError as error:
        raise LandmarkFileError(f"{path}: not a .pts landmark file ({error})") from None
    if len(values) != 2 * NUM_LANDMARKS:
        raise LandmarkFileError(
            f"{path}: expected 68 points between '{{' and '}}', found {len(values) / 2:g}"
        )
    return check_landmarks(np.asarray(values).reshape(NUM_LANDMARKS, 2) - 1.0, str(path))


def read_dlib_xml(path: str | Path, data: bytes | None = None) -> dict[str, list[np.ndarray]]:
    """dlib ``imglab`` XML (the file at ``path``, or its ``data``) -> {image file name as written: [(68, 2)
    landmarks per face box]}. Boxes without 68 parts are left out (dlib files may mix in plain face boxes)."""
    try:
        root = ET.parse(path if data is None else io.BytesIO(data)).getroot()
    except (ET.ParseError, OSError) as error:
        raise LandmarkFileError(f"{path}: not a readable dlib XML file ({error})") from None
    faces: dict[str, list[np.ndarray]] = {}
    for image in root.iter("image"):
        name = image.get("file")
        for box in image.iter("box"):
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
            if sorted(parts) != list(range(NUM_LANDMARKS)):
                continue
            landmarks = np.asarray([parts[i] for i in range(NUM_LANDMARKS)], dtype=np.float32)
            faces.setdefault(name, []).append(check_landmarks(landmarks, f"{path}: {name}"))
    return faces


def is_dlib_xml(head: bytes) -> bool:
    """True when the first bytes of an XML file look like a dlib imglab landmark file."""
    return b"<dataset>" in head[:512]
