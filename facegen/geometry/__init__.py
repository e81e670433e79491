"""Cameras, rotations, normals and spherical-harmonics shading: batched, differentiable, device-agnostic."""

from facegen.geometry.camera import (
    MODEL_TO_OPENCV,
    intrinsics_from_focal,
    intrinsics_from_fov,
    project_points,
    transform_points,
)
from facegen.geometry.framing import (
    DEFAULT_FILL,
    DEFAULT_FOV,
    canonical_landmarks,
    focal_from_fov,
    frontal_translation,
)
from facegen.geometry.normals import face_normals, vertex_normals
from facegen.geometry.rotations import (
    axis_angle_to_matrix,
    euler_to_matrix,
    matrix_to_euler,
    rotation_angle_between,
)
from facegen.geometry.sh import SH_COEFFS, ambient_sh, sh_basis, sh_shading

__all__ = [
    "DEFAULT_FILL",
    "DEFAULT_FOV",
    "canonical_landmarks",
    "focal_from_fov",
    "frontal_translation",
    "MODEL_TO_OPENCV",
    "SH_COEFFS",
    "ambient_sh",
    "axis_angle_to_matrix",
    "euler_to_matrix",
    "face_normals",
    "intrinsics_from_focal",
    "intrinsics_from_fov",
    "matrix_to_euler",
    "rotation_angle_between",
    "project_points",
    "sh_basis",
    "sh_shading",
    "transform_points",
    "vertex_normals",
]
