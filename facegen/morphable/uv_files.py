"""UV layouts for face models that ship without one (BFM 2009/2017, BFM-front, FLAME's linear part...): read from
the files people have for them and checked against the model (``facegen model convert ... --uv FILE``).

Accepted (UVs in [0, 1], v up as in OBJ and PyTorch3D's TexturesUV):
- ``.npy``: per-vertex (V, 2) (the UV triangles are the model's triangles) or per-corner (F, 3, 2) / (3F, 2)
  (corners of the model's triangles in order; equal corners are merged);
- ``.mat``: the one array in it of one of those shapes (or transposed, (2, V)), e.g. the per-vertex ``UV`` of
  3DDFA's ``BFM_UV.mat`` for a model of the same vertices;
- ``.obj``: a mesh with the model's vertex count and triangles (``f v/vt``), its ``vt`` coordinates.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from facegen.errors import BadFileError, ConfigError


class UVLayoutFile(NamedTuple):
    """A model's UV layout read from a file: ``uv_coords`` (T, 2), ``uv_faces`` (F, 3) and what was checked."""

    uv_coords: np.ndarray
    uv_faces: np.ndarray
    report: str


def _from_array(
    array: np.ndarray, faces: np.ndarray, num_vertices: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(array, dtype=np.float64)
    count = len(faces)
    if array.ndim == 2 and array.shape[0] == 2 and array.shape[1] in (num_vertices, 3 * count):
        array = array.T
    if array.shape == (num_vertices, 2):
        return array, faces.copy()
    if array.shape == (count, 3, 2) or array.shape == (3 * count, 2):
        corners = array.reshape(-1, 2)
        uv, inverse = np.unique(np.round(corners, 7), axis=0, return_inverse=True)
        return uv, inverse.reshape(count, 3)
    raise BadFileError(
        f"{source}: UV array of shape {array.shape}; the model has {num_vertices} vertices and {count} triangles: "
        f"expected ({num_vertices}, 2) per vertex or ({count}, 3, 2) per corner"
    )


def _from_mat(path: Path, faces: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        data = {k: v for k, v in loadmat(str(path)).items() if not k.startswith("__")}
    except (ValueError, TypeError, OSError) as error:
        raise BadFileError(f"{path}: not a readable .mat file ({error})") from None
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"}
    for value in arrays.values():
        try:
            return _from_array(value, faces, num_vertices, str(path))
        except BadFileError:
            continue
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items()) or "none"
    raise BadFileError(
        f"{path}: no UV array for a model of {num_vertices} vertices and {len(faces)} triangles (float arrays: "
        f"{shapes}); a layout of another vertex set must be indexed to this model's vertices first"
    )


def _from_obj(path: Path, faces: np.ndarray, num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    from facegen.morphable.formats.obj_mesh import read_obj, triangulate

    vertices, uv, polygons = read_obj(path, with_faces=True)
    if len(vertices) != num_vertices or len(uv) == 0:
        raise BadFileError(
            f"{path}: {len(vertices)} vertices and {len(uv)} UVs; expected the model's {num_vertices} vertices with "
            "vt coordinates"
        )
    obj_faces, uv_faces = triangulate(polygons, path)
    if obj_faces.shape != faces.shape or not np.array_equal(obj_faces, faces):
        raise BadFileError(f"{path}: its triangles are not the model's ({len(obj_faces)} vs {len(faces)})")
    return uv, uv_faces


def read_uv_layout(path: str | Path, faces: np.ndarray, num_vertices: int) -> UVLayoutFile:
    """The UV layout in ``path`` for a model of ``num_vertices`` vertices and triangles ``faces`` (F, 3).

    Raises:
        ConfigError: no such file or an unknown extension.
        BadFileError: counts that do not fit the model, UVs outside [0, 1], or a file that cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--uv {path} does not exist; give a .npy, .mat or .obj UV layout")
    faces = np.asarray(faces, dtype=np.int64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise BadFileError(f"{path}: not a numeric .npy ({error})") from None
        uv, uv_faces = _from_array(array, faces, num_vertices, str(path))
    elif suffix == ".mat":
        uv, uv_faces = _from_mat(path, faces, num_vertices)
    elif suffix == ".obj":
        uv, uv_faces = _from_obj(path, faces, num_vertices)
    else:
        raise ConfigError(f"--uv {path}: unknown UV file type {suffix!r}; give .npy, .mat or .obj")
    if not np.isfinite(uv).all() or uv.min() < -1e-6 or uv.max() > 1 + 1e-6:
        raise BadFileError(
            f"{path}: UVs span [{uv.min():.3g}, {uv.max():.3g}], outside [0, 1]; normalise them to the texture first"
        )
    corners = uv[uv_faces]
    area = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    flipped = int(min((area < 0).sum(), (area > 0).sum()))  # triangles against the layout's majority winding
    degenerate = int((np.abs(area) < 1e-12).sum())
    report = (
        f"UV layout from {path.name}: {len(uv)} UV points for {len(uv_faces)} triangles, {flipped} flipped, "
        f"{degenerate} degenerate"
    )
    return UVLayoutFile(uv.astype(np.float32).clip(0, 1), uv_faces.astype(np.int64), report)
