"""Helpers shared by the face-model readers: file checks, basis layout, orientation, landmark files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegen.morphable.model import ModelFileError, MorphableModel


def require_file(path: Path, what: str, where: str) -> Path:
    """Return ``path`` or raise FileNotFoundError saying what the file is and where the user gets it."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: expected {path}. {where}")
    return path


def require_field(container, key: str, source: Path | str):
    """``container[key]``, or a ModelFileError naming the missing field and the file."""
    try:
        return container[key]
    except (KeyError, ValueError) as error:
        raise ModelFileError(f"{source}: field '{key}' is missing; is this the right file?") from error


def split_basis(
    flat: np.ndarray, num_vertices: int, field: str, source: Path | str
) -> tuple[np.ndarray, np.ndarray]:
    """A (3V, K) matrix of interleaved xyz columns (each scaled or not) -> unit directions (K, V, 3), norms (K,).

    The norms become the standard deviations, so the model's coefficients stay N(0, 1) whether the file
    stores an orthonormal basis with separate deviations (multiply them in first) or a pre-scaled one.
    """
    flat = np.asarray(flat, dtype=np.float64)
    if flat.ndim != 2 or flat.shape[0] != 3 * num_vertices:
        raise ModelFileError(f"{source}: field '{field}' must be (3 * {num_vertices}, K), got {flat.shape}")
    norms = np.linalg.norm(flat, axis=0)
    directions = flat / np.where(norms > 0, norms, 1.0)
    return directions.T.reshape(-1, num_vertices, 3).astype(np.float32), norms.astype(np.float32)


def orient_outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``faces`` with the winding flipped if most triangle normals point towards the mesh centroid."""
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    normals = np.cross(v1 - v0, v2 - v0)
    centres = (v0 + v1 + v2) / 3 - vertices.mean(0)
    return faces if (normals * centres).sum() >= 0 else faces[:, [0, 2, 1]]


def read_landmark_indices(path: Path, num_vertices: int) -> np.ndarray:
    """68 0-based vertex indices from a ``.npy`` or whitespace-separated text file."""
    require_file(path, "68-landmark index file", "Give a .npy or .txt file with 68 0-based vertex indices.")
    try:
        values = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path)
    except ValueError as error:
        raise ModelFileError(f"{path}: not a readable landmark index file ({error})") from None
    values = np.asarray(values).reshape(-1)
    if values.shape != (68,) or not np.allclose(values, np.round(values)):
        raise ModelFileError(f"{path}: expected 68 integer vertex indices, got {values.shape} values")
    values = values.astype(np.int64)
    if values.min() < 0 or values.max() >= num_vertices:
        raise ModelFileError(f"{path}: landmark indices must be 0-based and below {num_vertices}")
    return values


def restrict_mesh(faces: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep vertices ``keep`` (old indices, ordered); return (faces among them, renumbered) and old->new map."""
    remap = -np.ones(int(max(faces.max(), keep.max())) + 1, dtype=np.int64)
    remap[keep] = np.arange(keep.shape[0])
    inside = (remap[faces] >= 0).all(1)
    return remap[faces[inside]], remap


def build_model(
    *, mean, shape, expression, faces, landmarks, name, source, albedo_mean=None, albedo=None, masks=None
) -> MorphableModel:
    """A millimetre MorphableModel from flat interleaved arrays: ``mean`` (3V,), bases (3V, K) scaled to one sd.

    Triangles are oriented outward; albedo (``albedo_mean`` (3V,), ``albedo`` (3V, Ka)) is optional.
    """
    if mean.size % 3:
        raise ModelFileError(f"{source}: mean shape has {mean.size} values, not a multiple of 3")
    num_vertices = mean.size // 3
    vertices = mean.reshape(num_vertices, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ModelFileError(f"{source}: triangle indices outside [0, {num_vertices}); wrong index base?")
    shape_basis, shape_std = split_basis(shape, num_vertices, "shape basis", source)
    expression_basis, expression_std = split_basis(expression, num_vertices, "expression basis", source)
    arrays = {
        "name": np.array(name),
        "units": np.array("mm"),
        "mean": vertices.astype(np.float32),
        "shape_basis": shape_basis,
        "shape_std": shape_std,
        "expression_basis": expression_basis,
        "expression_std": expression_std,
        "faces": orient_outward(vertices, faces).astype(np.int32),
        "landmark_indices": landmarks.astype(np.int32),
        **{f"mask_{k}": v for k, v in (masks or {}).items()},
    }
    if albedo_mean is not None:
        if albedo_mean.size != mean.size:
            raise ModelFileError(
                f"{source}: albedo mean has {albedo_mean.size} values, the shape mean {mean.size}"
            )
        arrays["albedo_mean"] = albedo_mean.reshape(num_vertices, 3).astype(np.float32)
        arrays["albedo_basis"], arrays["albedo_std"] = split_basis(
            albedo, num_vertices, "albedo basis", source
        )
    return MorphableModel.from_arrays(arrays, source=str(source))
