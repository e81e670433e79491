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


def photo_intrinsics(K: Tensor, transform: Tensor) -> Tensor:
    """Intrinsics (B, 3, 3) that project into a photo what ``K`` (B, 3, 3) projects into a crop of it, the crop
    cut by ``transform`` (B, 2, 3), photo -> crop pixels, a similarity: ``A⁻¹ K`` with ``A`` the transform as a
    3 x 3 matrix. Exact for any camera-frame point: a face fitted in a crop is drawn into the photo by rendering
    the same vertices with these intrinsics. With a turned crop the upper-left 2 x 2 block is a scaled rotation
    (:func:`upright_intrinsics` splits it)."""
    bottom = transform.new_tensor([0.0, 0.0, 1.0]).expand(transform.shape[0], 1, 3)
    return torch.linalg.solve(torch.cat([transform, bottom], 1), K)


def upright_intrinsics(K: Tensor, tolerance: float = 1e-4) -> tuple[Tensor, Tensor]:
    """``K`` (B, 3, 3) with a scaled rotation for its upper-left 2 x 2 block (:func:`photo_intrinsics` of a
    turned crop) as ``K_upright @ roll``: intrinsics with equal focal lengths and no skew (B, 3, 3), and the
    rotation about the optical axis (B, 3, 3) that turns the camera frame first. Raises ``ValueError`` for a
    block that is not a scaled rotation (skew or unequal focal lengths beyond ``tolerance``, relative)."""
    block = K[:, :2, :2]
    a, b = (block[:, 0, 0] + block[:, 1, 1]) / 2, (block[:, 1, 0] - block[:, 0, 1]) / 2
    focal = torch.sqrt(a * a + b * b)
    cos, sin = a / focal, b / focal
    rotation2 = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    if (block - focal[:, None, None] * rotation2).abs().amax() > tolerance * float(focal.abs().max()):
        raise ValueError("intrinsics with skew or unequal focal lengths are not a turned pinhole camera")
    upright = K.clone()
    upright[:, :2, :2] = focal[:, None, None] * torch.eye(2, dtype=K.dtype, device=K.device)
    roll = torch.eye(3, dtype=K.dtype, device=K.device).repeat(K.shape[0], 1, 1)
    roll[:, :2, :2] = rotation2
    return upright, roll
