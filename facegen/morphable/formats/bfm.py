"""Basel Face Model readers: BFM 2009 (+ Guo et al. expressions), Deep3DFaceRecon's "front" BFM, BFM 2017.

All three are converted to millimetres and albedo in [0, 1]. BFM 2009 and BFM 2017 do not ship the iBUG 68
landmarks: pass a file of 68 0-based vertex indices (of the full mesh) with ``landmarks=``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from facegen.morphable.formats.common import (
    build_model,
    read_landmark_indices,
    require_field,
    require_file,
    restrict_mesh,
)
from facegen.morphable.model import ModelFileError, MorphableModel

BFM_WHERE = (
    "The Basel Face Model needs a free registration: https://faces.dmi.unibas.ch/bfm/ "
    "(BFM 2009: '01_MorphableModel.mat'; BFM 2017: 'model2017-1_face12_nomouth.h5' or 'model2017-1_bfm_nomouth.h5')."
)
GUO_WHERE = (
    "The expression basis of Guo et al. ('Exp_Pca.bin', 'std_exp.txt') comes with 3DDFA / Deep3DFaceRecon's BFM "
    "instructions; 'BFM_exp_idx.mat' (field trimIndex) with Deep3DFaceRecon's BFM folder."
)
FRONT_WHERE = (
    "Deep3DFaceRecon's 'BFM_model_front.mat' is built by its scripts from BFM 2009 (see its README)."
)


def _loadmat(path: Path) -> dict:
    try:
        return scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, OSError) as error:
        raise ModelFileError(f"{path}: not a readable MATLAB v5 file ({error})") from error


def read_guo_expressions(path: Path, num_vertices: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``Exp_Pca.bin``: int32 K, float32 mean (3V), float32 basis (K x 3V, a row per component) -> mean, (3V, K)."""
    raw = path.read_bytes()
    if len(raw) < 4:
        raise ModelFileError(f"{path}: too short to be Exp_Pca.bin")
    count = int(np.frombuffer(raw[:4], dtype=np.int32)[0])
    floats = np.frombuffer(raw[4:], dtype=np.float32)
    if count <= 0 or floats.size % (count + 1) != 0 or floats.size // (count + 1) % 3 != 0:
        raise ModelFileError(
            f"{path}: header says {count} components, but {floats.size} floats do not fit (K + 1) * 3V"
        )
    length = floats.size // (count + 1)
    if num_vertices is not None and length != 3 * num_vertices:
        raise ModelFileError(f"{path}: basis has {length // 3} vertices, expected {num_vertices}")
    return floats[:length].copy(), floats[length:].reshape(count, length).T.copy()


def load_bfm2009(source: str | Path, landmarks: str | Path | None = None) -> MorphableModel:
    """BFM 2009 from a folder with ``01_MorphableModel.mat``, ``Exp_Pca.bin``, ``std_exp.txt``, ``BFM_exp_idx.mat``.

    The model is restricted to the vertices the expression basis covers (``trimIndex``; all of them when the
    expression basis has as many vertices as the model). Units: the file's micrometres become millimetres.
    """
    if landmarks is None:
        raise FileNotFoundError(
            "BFM 2009 has no 68-landmark definition: pass landmarks=FILE (--landmarks FILE) with 68 0-based "
            "vertex indices of the 53,490-vertex mesh"
        )
    folder = Path(source)
    mat = _loadmat(require_file(folder / "01_MorphableModel.mat", "BFM 2009 model", BFM_WHERE))
    mean = np.asarray(require_field(mat, "shapeMU", folder), np.float64).reshape(-1)
    num_full = mean.size // 3
    shape_pc = require_field(mat, "shapePC", folder) * np.asarray(
        require_field(mat, "shapeEV", folder)
    ).reshape(1, -1)
    tex_pc = require_field(mat, "texPC", folder) * np.asarray(require_field(mat, "texEV", folder)).reshape(
        1, -1
    )
    tex_mean = np.asarray(require_field(mat, "texMU", folder), np.float64).reshape(-1)
    faces = np.asarray(require_field(mat, "tl", folder)).astype(np.int64) - 1
    exp_mean, exp_pc = read_guo_expressions(
        require_file(folder / "Exp_Pca.bin", "expression basis", GUO_WHERE)
    )
    std_path = folder / "std_exp.txt"
    exp_std = np.loadtxt(require_file(std_path, "expression standard deviations", GUO_WHERE)).reshape(1, -1)
    if exp_std.shape[1] != exp_pc.shape[1]:
        raise ModelFileError(
            f"{std_path}: {exp_std.shape[1]} values for {exp_pc.shape[1]} expression components"
        )
    num_exp = exp_mean.size // 3
    if num_exp == num_full:
        keep = np.arange(num_full)
    else:
        index_path = require_file(folder / "BFM_exp_idx.mat", "expression vertex index", GUO_WHERE)
        keep = (
            np.asarray(require_field(_loadmat(index_path), "trimIndex", index_path))
            .reshape(-1)
            .astype(np.int64)
            - 1
        )
        if keep.size != num_exp or keep.min() < 0 or keep.max() >= num_full:
            raise ModelFileError(
                f"{index_path}: trimIndex must hold {num_exp} 1-based indices below {num_full}"
            )
    coords = (3 * keep[:, None] + np.arange(3)).reshape(-1)
    faces, remap = restrict_mesh(faces, keep)
    model_landmarks = remap[read_landmark_indices(Path(landmarks), num_full)]
    if (model_landmarks < 0).any():
        raise ModelFileError(f"{landmarks}: some landmarks lie outside the expression-covered vertices")
    um_to_mm = 1e-3
    return build_model(
        mean=mean[coords] * um_to_mm,
        shape=shape_pc[coords] * um_to_mm,
        expression=exp_pc * exp_std * um_to_mm,
        albedo_mean=tex_mean[coords] / 255.0,
        albedo=tex_pc[coords] / 255.0,
        faces=faces,
        landmarks=model_landmarks,
        name="bfm2009",
        source=folder,
    )


def load_bfm_front(source: str | Path) -> MorphableModel:
    """Deep3DFaceRecon's ``BFM_model_front.mat`` (35,709 vertices; decimetres become millimetres)."""
    path = Path(source)
    if path.is_dir():
        path = path / "BFM_model_front.mat"
    mat = _loadmat(require_file(path, "Deep3DFaceRecon front BFM", FRONT_WHERE + " " + BFM_WHERE))
    mean = np.asarray(require_field(mat, "meanshape", path), np.float64).reshape(-1)
    dm_to_mm = 100.0
    masks = {}
    if "skinmask" in mat:
        masks["skin"] = np.asarray(mat["skinmask"]).reshape(-1) > 0
    return build_model(
        mean=mean * dm_to_mm,
        shape=np.asarray(require_field(mat, "idBase", path)) * dm_to_mm,
        expression=np.asarray(require_field(mat, "exBase", path)) * dm_to_mm,
        albedo_mean=np.asarray(require_field(mat, "meantex", path), np.float64).reshape(-1) / 255.0,
        albedo=np.asarray(require_field(mat, "texBase", path)) / 255.0,
        faces=np.asarray(require_field(mat, "tri", path)).astype(np.int64) - 1,
        landmarks=np.asarray(require_field(mat, "keypoints", path)).reshape(-1).astype(np.int64) - 1,
        name="bfm-front",
        source=path,
        masks=masks,
    )


def load_bfm2017(source: str | Path, landmarks: str | Path | None = None) -> MorphableModel:
    """BFM 2017 ``.h5`` (statismo layout: orthonormal ``pcaBasis`` with ``pcaVariance``; millimetres)."""
    import h5py

    path = require_file(Path(source), "BFM 2017 model", BFM_WHERE)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({error})") from error
    with handle:

        def part(name: str) -> tuple[np.ndarray, np.ndarray]:
            mean = np.asarray(require_field(handle, f"{name}/model/mean", path), np.float64)
            basis = np.asarray(require_field(handle, f"{name}/model/pcaBasis", path), np.float64)
            variance = np.asarray(require_field(handle, f"{name}/model/pcaVariance", path), np.float64)
            if basis.ndim != 2 or variance.shape != (basis.shape[1],):
                raise ModelFileError(
                    f"{path}: '{name}/model/pcaVariance' must have one value per pcaBasis column"
                )
            return mean, basis * np.sqrt(np.clip(variance, 0, None))[None]

        mean, shape = part("shape")
        exp_mean, expression = part("expression")
        albedo_mean, albedo = part("color")
        faces = np.asarray(require_field(handle, "shape/representer/cells", path)).astype(np.int64)
    if faces.ndim != 2 or faces.shape[0] != 3:
        raise ModelFileError(f"{path}: 'shape/representer/cells' must be (3, F), got {faces.shape}")
    if landmarks is None:
        raise FileNotFoundError(
            "BFM 2017 has no iBUG 68-landmark definition: pass landmarks=FILE (--landmarks FILE) with 68 0-based "
            "vertex indices"
        )
    num_vertices = mean.size // 3
    return build_model(
        mean=mean + exp_mean,
        shape=shape,
        expression=expression,
        albedo_mean=albedo_mean,
        albedo=albedo,
        faces=faces.T,
        landmarks=read_landmark_indices(Path(landmarks), num_vertices),
        name="bfm2017",
        source=path,
    )
