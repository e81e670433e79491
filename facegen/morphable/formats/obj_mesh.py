"""The OBJ subset face-model files come as: vertices, ``vt`` coordinates and ``v/vt`` polygons (read with
regular expressions, nothing executed), triangulated as fans."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facegen.morphable.model import ModelFileError


def read_obj(path: Path, with_faces: bool = False):
    """Vertices (N, 3) of an OBJ file, and with ``with_faces`` also vt (T, 2) and 1-based polygon corner lists."""
    text = path.read_text()
    vertex_lines = re.findall(r"^v\s+(.*)$", text, flags=re.M)
    try:
        vertices = np.array(" ".join(vertex_lines).split(), dtype=np.float64).reshape(-1, 3)
    except ValueError as error:
        raise ModelFileError(f"{path}: malformed 'v' lines ({error})") from error
    if not with_faces:
        return vertices
    uv = np.array(" ".join(re.findall(r"^vt\s+(\S+\s+\S+).*$", text, flags=re.M)).split(), dtype=np.float64)
    polygons = [line.split() for line in re.findall(r"^f\s+(.*)$", text, flags=re.M)]
    return vertices, uv.reshape(-1, 2), polygons


def triangulate(polygons: list[list[str]], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """0-based (F, 3) vertex and uv triangles from OBJ polygons ``v/vt`` (fans from the first corner)."""
    faces, uv_faces = [], []
    for polygon in polygons:
        corners = [corner.split("/") for corner in polygon]
        if len(corners) < 3 or any(len(c) < 2 or not c[1] for c in corners):
            raise ModelFileError(
                f"{path}: every face needs >= 3 corners written as v/vt, got {' '.join(polygon)}"
            )
        v = [int(c[0]) - 1 for c in corners]
        t = [int(c[1]) - 1 for c in corners]
        for i in range(1, len(corners) - 1):
            faces.append((v[0], v[i], v[i + 1]))
            uv_faces.append((t[0], t[i], t[i + 1]))
    return np.asarray(faces, np.int64), np.asarray(uv_faces, np.int64)
