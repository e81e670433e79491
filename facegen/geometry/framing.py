"""Default face framing shared by synthetic data, the crop template of ``facegen prepare`` and MoFA's
initial pose: a narrow pinhole camera (Deep3DFaceRecon's focal of 1015 px at 224²) looking at a frontal face
whose jaw spans a fixed fraction of the image width."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facegen.geometry.camera import MODEL_TO_OPENCV, intrinsics_from_fov, project_points, transform_points

#: Horizontal field of view in degrees: focal = 1015 px for a 224-pixel-wide image.
DEFAULT_FOV = 12.59
#: Width of the jaw contour (landmarks 0 to 16) as a fraction of the image width.
DEFAULT_FILL = 0.55


def focal_from_fov(fov_degrees: float, width: int) -> float:
    """Focal length in pixels for a horizontal field of view and an image ``width`` in pixels."""
    return (width / 2) / math.tan(math.radians(fov_degrees) / 2)


def frontal_translation(
    landmarks: Tensor, image_size: tuple[int, int], fov: float = DEFAULT_FOV, fill: float = DEFAULT_FILL
) -> Tensor:
    """Translation (3,) that puts a frontal face (rotation :data:`MODEL_TO_OPENCV`) in frame.

    Args:
        landmarks: (68, 3) the mean face's landmarks in the model frame (any unit).
        image_size: (H, W) in pixels.

    Returns:
        t such that the landmarks' centroid projects to the image centre and the jaw spans ``fill`` of the width.
    """
    points = landmarks @ MODEL_TO_OPENCV.to(landmarks).T
    jaw_width = (points[16, :2] - points[0, :2]).norm()
    distance = focal_from_fov(fov, image_size[1]) * jaw_width / (fill * image_size[1])
    centre = points.mean(0)
    return torch.stack([-centre[0], -centre[1], distance - centre[2]])


def canonical_landmarks(
    landmarks: Tensor, image_size: tuple[int, int], fov: float = DEFAULT_FOV, fill: float = DEFAULT_FILL
) -> Tensor:
    """(68, 2) pixel positions of the model-frame ``landmarks`` (68, 3) seen frontally in the default frame."""
    translation = frontal_translation(landmarks, image_size, fov, fill)
    camera = transform_points(landmarks[None], MODEL_TO_OPENCV.to(landmarks)[None], translation[None])
    pixels, _ = project_points(camera, intrinsics_from_fov(fov, image_size).to(landmarks))
    return pixels[0]
