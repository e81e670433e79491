"""Pinhole camera in the OpenCV convention.

Camera frame: x right, y down, z forward into the scene. Pixel (0, 0) is the centre of the top-left pixel, so
the principal point of a W x H image is ((W - 1) / 2, (H - 1) / 2). Intrinsics K are in pixels.
Face models use Y up and look along +Z; :data:`MODEL_TO_OPENCV` turns such a face to look at the camera.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facegen.errors import ConfigError

#: (3, 3) rotation by 180 degrees about X: model frame (Y up, face towards +Z) -> OpenCV camera frame,
#: so an unrotated face, translated along +z, looks straight into the camera.
MODEL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def intrinsics_from_focal(focal: Tensor | float, image_size: tuple[int, int]) -> Tensor:
    """K (B, 3, 3) from focal lengths in pixels (B,) or a float (B = 1) and ``image_size`` (H, W)."""
    focal = focal.reshape(-1) if isinstance(focal, Tensor) else torch.tensor([float(focal)])
    height, width = image_size
    K = torch.zeros(focal.shape[0], 3, 3, dtype=focal.dtype, device=focal.device)
    K[:, 0, 0] = focal
    K[:, 1, 1] = focal
    K[:, 0, 2] = (width - 1) / 2
    K[:, 1, 2] = (height - 1) / 2
    K[:, 2, 2] = 1
    return K


def intrinsics_from_fov(fov_degrees: float, image_size: tuple[int, int]) -> Tensor:
    """K (1, 3, 3) for a horizontal field of view in degrees and ``image_size`` (H, W)."""
    if not 0 < fov_degrees < 180:
        raise ConfigError(f"field of view must be in (0, 180) degrees, got {fov_degrees}")
    focal = (image_size[1] / 2) / math.tan(math.radians(fov_degrees) / 2)
    return intrinsics_from_focal(focal, image_size)


def transform_points(points: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """Rigid transform ``R p + t``: points (B, N, 3), rotation (B, 3, 3), translation (B, 3) -> (B, N, 3)."""
    return points @ rotation.transpose(-1, -2) + translation.unsqueeze(-2)


def project_points(points: Tensor, K: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Perspective projection of camera-frame points.

    Args:
        points: (B, N, 3) in the OpenCV camera frame.
        K: (B, 3, 3) or (3, 3) intrinsics in pixels.

    Returns:
        pixels (B, N, 2) as (x, y) in pixels, and depth (B, N) (the camera-frame z).
    """
    depth = points[..., 2]
    safe = torch.where(depth.abs() < eps, torch.full_like(depth, eps), depth)
    normalized = torch.cat([points[..., :2] / safe.unsqueeze(-1), torch.ones_like(depth).unsqueeze(-1)], -1)
    pixels = normalized @ K.transpose(-1, -2)
    return pixels[..., :2], depth
