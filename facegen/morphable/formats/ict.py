"""ICT-FaceKit reader (MIT licence): the original ``FaceXModel`` folder, or its ``.npz`` conversion.

FaceXModel holds ``generic_neutral_mesh.obj``, ``identity000.obj`` ... (each the neutral mesh plus one identity
mode at +1 standard deviation), one OBJ per ARKit-style expression blendshape, and ``vertex_indices.json``
(expression names, landmark vertices). Quads are split along their first diagonal, (a, b, c, d) ->
(a, b, c), (a, c, d); per-corner UVs are kept. Regions (the toolkit's vertex ranges): ``face`` = vertices
0-9408, ``head`` = face + head and neck = 0-11247. Units: centimetres.

Landmarks (``landmarks=``): ``calibrated`` (default) takes the 68 vertices of :data:`CALIBRATED_LANDMARKS`, ICT's
own points with the eyebrows, nose, eyes and mouth re-chosen for the convention of 2D detectors and 300-W-style
annotations (how they were chosen and measured is in the file's header); ``ict`` keeps the toolkit's own
``idx_to_landmark_verts``; a path reads 68 indices from a ``.npy`` or text file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from facegen.morphable.formats.common import read_landmark_indices, require_file
from facegen.morphable.formats.obj_mesh import read_obj, triangulate
from facegen.morphable.model import ModelFileError, MorphableModel

log = logging.getLogger(__name__)

ICT_WHERE = (
    "Get ICT-FaceKit (MIT) with `facegen model download ict`, or clone https://github.com/ICT-VGL/ICT-FaceKit "
    "and pass its FaceXModel folder."
)
REGION_VERTEX_COUNT = {"face": 9409, "head": 11248}
NARROW_FACE_VERTEX_COUNT = 6706
#: The default landmark vertices (``landmarks="calibrated"``), written by ``benchmarks/calibrate_landmarks.py``.
CALIBRATED_LANDMARKS = Path(__file__).with_name("ict_landmarks_2d.txt")


def load_ict(
    source: str | Path, region: str = "head", landmarks: str | Path = "calibrated"
) -> MorphableModel:
    """ICT-FaceKit from a ``FaceXModel`` folder or an ``ict_face_model.npz`` conversion (see the assets README),
    with the landmark vertices ``landmarks`` (``calibrated``, ``ict`` or a file; see the module docstring)."""
    path = Path(source)
    if region not in REGION_VERTEX_COUNT:
        raise ValueError(f"ICT region must be one of {sorted(REGION_VERTEX_COUNT)}, got {region!r}")
    if path.suffix == ".npz":
        arrays = _npz_arrays(require_file(path, "ICT-FaceKit npz", ICT_WHERE), region)
    elif not path.is_dir():
        raise FileNotFoundError(f"ICT-FaceKit folder not found: {path}. {ICT_WHERE}")
    else:
        arrays = _folder_arrays(path, region)
    if str(landmarks) != "ict":
        chosen = CALIBRATED_LANDMARKS if str(landmarks) == "calibrated" else Path(landmarks)
        arrays["landmark_indices"] = read_landmark_indices(chosen, arrays["vertices_mean"].shape[0])
    return _from_ict_arrays(arrays, region, str(path))


def _folder_arrays(folder: Path, region: str) -> dict[str, np.ndarray]:
    index_path = require_file(folder / "vertex_indices.json", "ICT-FaceKit vertex_indices.json", ICT_WHERE)
    try:
        indices = json.loads(index_path.read_text())
        expression_names = list(indices["expressions"])
        landmarks = np.asarray(indices["idx_to_landmark_verts"], dtype=np.int64)
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ModelFileError(
            f"{index_path}: needs 'expressions' and 'idx_to_landmark_verts' ({error})"
        ) from error
    neutral_path = require_file(folder / "generic_neutral_mesh.obj", "ICT-FaceKit neutral mesh", ICT_WHERE)
    neutral, uv, polygons = read_obj(neutral_path, with_faces=True)
    faces, uv_faces = triangulate(polygons, neutral_path)
    count = REGION_VERTEX_COUNT[region]
    inside = (faces < count).all(1)
    faces, uv_faces = faces[inside], uv_faces[inside]
    used_uv, uv_faces = np.unique(uv_faces, return_inverse=True)
    identity_paths = []
    while (folder / f"identity{len(identity_paths):03d}.obj").is_file():
        identity_paths.append(folder / f"identity{len(identity_paths):03d}.obj")
    present = [n for n in expression_names if (folder / f"{n}.obj").is_file()]
    missing = sorted(set(expression_names) - set(present))
    if missing:
        log.warning(
            "ICT-FaceKit: %d of %d expression files missing in %s (e.g. %s); converting the rest",
            len(missing),
            len(expression_names),
            folder,
            missing[0],
        )
    if not identity_paths:
        raise FileNotFoundError(f"no identity000.obj in {folder}. {ICT_WHERE}")

    def deltas(paths: list[Path]) -> np.ndarray:
        out = np.empty((len(paths), count, 3), np.float32)
        for k, mode_path in enumerate(paths):
            vertices = read_obj(mode_path)
            if vertices.shape != neutral.shape:
                raise ModelFileError(
                    f"{mode_path}: {vertices.shape[0]} vertices, the neutral mesh has {neutral.shape[0]}"
                )
            out[k] = vertices[:count] - neutral[:count]
        return out

    arrays = {
        "vertices_mean": neutral[:count],
        "shape_basis": deltas(identity_paths),
        "expression_basis": deltas([folder / f"{n}.obj" for n in present]),
        "expression_names": np.array(present),
        "faces": faces,
        "uv_coords": uv[used_uv],
        "uv_faces": uv_faces.reshape(-1, 3),
        "landmark_indices": landmarks,
    }
    return arrays


def _npz_arrays(path: Path, region: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError) as error:
        raise ModelFileError(f"{path}: not a readable .npz ({error})") from error
    for field in ("vertices_mean", "shape_basis", "expression_basis", "faces", "landmark_indices"):
        if field not in arrays:
            raise ModelFileError(f"{path}: field '{field}' is missing; is this ICT-FaceKit's npz conversion?")
    num_vertices = arrays["vertices_mean"].shape[0]
    if num_vertices < REGION_VERTEX_COUNT[region]:
        raise ModelFileError(f"{path}: {num_vertices} vertices, too few for region {region!r}")
    if num_vertices > REGION_VERTEX_COUNT[region]:
        count = REGION_VERTEX_COUNT[region]
        inside = (arrays["faces"] < count).all(1)
        arrays["vertices_mean"] = arrays["vertices_mean"][:count]
        arrays["shape_basis"] = arrays["shape_basis"][:, :count]
        arrays["expression_basis"] = arrays["expression_basis"][:, :count]
        arrays["faces"] = arrays["faces"][inside]
        if "uv_faces" in arrays:
            used, inverse = np.unique(arrays["uv_faces"][inside], return_inverse=True)
            arrays["uv_coords"], arrays["uv_faces"] = arrays["uv_coords"][used], inverse.reshape(-1, 3)
    return arrays


def _from_ict_arrays(arrays: dict[str, np.ndarray], region: str, source: str) -> MorphableModel:
    """Canonical model from ICT's arrays (vertices_mean, shape_basis deltas at +1 sd, expression deltas, ...)."""
    mean = arrays["vertices_mean"].astype(np.float32)
    num_vertices = mean.shape[0]
    vertex_ids = np.arange(num_vertices)
    canonical = {
        "name": np.array(f"ict-{region}"),
        "units": np.array("cm"),
        "mean": mean,
        "shape_basis": arrays["shape_basis"].astype(np.float32),
        "shape_std": np.ones(arrays["shape_basis"].shape[0], np.float32),
        "expression_basis": arrays["expression_basis"].astype(np.float32),
        "expression_std": np.ones(arrays["expression_basis"].shape[0], np.float32),
        "faces": arrays["faces"].astype(np.int32),
        "landmark_indices": arrays["landmark_indices"].astype(np.int32),
        "mask_face": vertex_ids < REGION_VERTEX_COUNT["face"],
        "mask_skin": vertex_ids < NARROW_FACE_VERTEX_COUNT,
        "expression_kind": np.array("blendshape"),  # ARKit-style blendshape weights, meaningful in [0, 1]
    }
    if "expression_names" in arrays:
        canonical["expression_names"] = arrays["expression_names"]
    if "uv_coords" in arrays:
        canonical["uv_coords"] = arrays["uv_coords"].astype(np.float32)
        canonical["uv_faces"] = arrays["uv_faces"].astype(np.int32)
    return MorphableModel.from_arrays(canonical, source=source)
