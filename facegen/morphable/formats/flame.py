"""FLAME reader (``generic_model.pkl`` / ``FLAME2020``), without chumpy.

Both files are pickles, read as data only (:mod:`facegen.safe_pickle`): numpy arrays and plain containers are
rebuilt, chumpy and scipy.sparse objects become records of their pickled state (each chumpy array is read from
its ``x`` field), and any other global is refused before anything runs.
Only the LINEAR part is converted: template, shape and expression blendshapes and triangles. FLAME's jaw/neck/eye articulation (linear blend skinning) is not converted.
Landmarks come from DECA's ``landmark_embedding.npy`` (``full_lmk_faces_idx``, ``full_lmk_bary_coords``): each of
the 68 barycentric points becomes the vertex of its triangle with the largest weight.
Units: metres become millimetres. FLAME's shape space has 300 components and the expression space 100.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegen.morphable.formats.common import build_model, require_file
from facegen.morphable.model import ModelFileError, MorphableModel
from facegen.safe_pickle import PickledObject, load_npy, load_pickle

FLAME_WHERE = (
    "FLAME needs a free registration at https://flame.is.tue.mpg.de/ (download 'FLAME 2020', file "
    "'generic_model.pkl'); the 68-landmark embedding 'landmark_embedding.npy' comes with DECA's data folder."
)
N_SHAPE_DIRS = 300


#: Module prefixes whose pickled objects are kept as data records (FLAME's ``Ch`` arrays, its sparse regressor).
STAND_INS = ("chumpy", "scipy.sparse")


def _array(value, field: str, source: Path) -> np.ndarray:
    if isinstance(value, PickledObject):
        state = getattr(value, "state", None)
        if not isinstance(state, dict) or "x" not in state:
            raise ModelFileError(f"{source}: field '{field}' is a chumpy object without its array ('x')")
        value = state["x"]
    return np.asarray(value)


def read_flame_pickle(path: Path) -> dict:
    """The FLAME pickle as a dict of plain numpy arrays (chumpy objects unwrapped)."""
    with path.open("rb") as handle:
        data = load_pickle(handle, path, STAND_INS, encoding="latin1")
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: expected a dict of arrays, got {type(data).__name__}")
    return data


def load_flame(source: str | Path, landmarks: str | Path | None = None) -> MorphableModel:
    """FLAME from ``generic_model.pkl`` (or a folder holding it and ``landmark_embedding.npy``)."""
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        path = path / "generic_model.pkl"
    data = read_flame_pickle(require_file(path, "FLAME model", FLAME_WHERE))
    for field in ("v_template", "shapedirs", "f"):
        if field not in data:
            raise ModelFileError(f"{path}: field '{field}' is missing; is this a FLAME model pickle?")
    template = _array(data["v_template"], "v_template", path).astype(np.float64)
    shapedirs = _array(data["shapedirs"], "shapedirs", path).astype(np.float64)
    faces = _array(data["f"], "f", path).astype(np.int64)
    num_vertices = template.shape[0]
    if template.shape != (num_vertices, 3) or shapedirs.shape[:2] != (num_vertices, 3):
        raise ModelFileError(
            f"{path}: 'shapedirs' must be (V, 3, K) with V = {num_vertices}, got {shapedirs.shape}"
        )
    if shapedirs.shape[2] <= N_SHAPE_DIRS:
        raise ModelFileError(
            f"{path}: 'shapedirs' has {shapedirs.shape[2]} components; FLAME 2020 has 300 + 100"
        )
    flat = shapedirs.reshape(3 * num_vertices, -1) * 1000.0  # interleaved xyz per vertex, metres -> mm
    embedding_path = Path(landmarks) if landmarks is not None else folder / "landmark_embedding.npy"
    return build_model(
        mean=template.reshape(-1) * 1000.0,
        shape=flat[:, :N_SHAPE_DIRS],
        expression=flat[:, N_SHAPE_DIRS:],
        faces=faces,
        landmarks=read_landmark_embedding(embedding_path, faces),
        name="flame",
        source=path,
    )


def read_landmark_embedding(path: Path, faces: np.ndarray) -> np.ndarray:
    """68 vertex indices from DECA's ``landmark_embedding.npy`` (a pickled dict inside a 0-d array)."""
    require_file(path, "FLAME 68-landmark embedding", FLAME_WHERE)
    embedding = load_npy(path)
    if not isinstance(embedding, dict):
        raise ModelFileError(f"{path}: expected a dict with 'full_lmk_faces_idx' and 'full_lmk_bary_coords'")
    for field in ("full_lmk_faces_idx", "full_lmk_bary_coords"):
        if field not in embedding:
            raise ModelFileError(f"{path}: field '{field}' is missing")
    face_idx = np.asarray(embedding["full_lmk_faces_idx"]).reshape(-1).astype(np.int64)
    bary = np.asarray(embedding["full_lmk_bary_coords"], dtype=np.float64).reshape(-1, 3)
    if face_idx.shape != (68,) or bary.shape != (68, 3):
        raise ModelFileError(
            f"{path}: expected 68 landmark faces and (68, 3) barycentrics, got {face_idx.shape}, {bary.shape}"
        )
    if face_idx.min() < 0 or face_idx.max() >= faces.shape[0]:
        raise ModelFileError(f"{path}: 'full_lmk_faces_idx' points outside the {faces.shape[0]} triangles")
    return faces[face_idx, bary.argmax(1)]
