"""Closed-form camera pose of a face from 2D landmarks and their 3D model points (stage 1 of the fitting engine).

Two solvers, both batched and weighted, in the OpenCV camera frame with known intrinsics K:
- :func:`weak_perspective_pose`: the scaled-orthographic camera by linear least squares, its 2 x 3 block made
  orthonormal by SVD; robust to noise, exact only for an orthographic camera.
- :func:`dlt_pose`: the calibrated direct linear transform (the 12 entries of [R | t] from the projection
  constraints, on centred and scaled 3D points), projected onto a rotation by SVD; exact on noiseless
  perspective landmarks of non-coplanar points, less stable under noise with a narrow field of view.
:func:`closed_form_pose` keeps, per face, the one with the smaller reprojection error.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from facegen.geometry.camera import project_points, transform_points


class Pose(NamedTuple):
    """Rigid model -> camera transform: rotation (B, 3, 3), translation (B, 3) in model units."""

    rotation: Tensor
    translation: Tensor


def normalized_coordinates(pixels: Tensor, K: Tensor) -> Tensor:
    """(B, N, 2) pixels -> (B, N, 2) normalised image coordinates ``K^-1 [x, y, 1]`` (K: (B, 3, 3))."""
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    return torch.stack([(pixels[..., 0] - cx) / fx, (pixels[..., 1] - cy) / fy], -1)


def _weighted_centroid(points: Tensor, weights: Tensor) -> Tensor:
    return (points * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1e-12)


def _nearest_rotation(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 3, 3) -> the nearest rotation (Frobenius) and the mean singular value (the scale)."""
    u, s, vh = torch.linalg.svd(matrix)
    fix = torch.ones_like(s)
    fix[:, 2] = torch.linalg.det(u @ vh).sign()
    return u @ torch.diag_embed(fix) @ vh, s.mean(-1)


def weak_perspective_pose(points: Tensor, pixels: Tensor, K: Tensor, weights: Tensor) -> Pose:
    """Scaled-orthographic pose: ``u ~ s (R[:2] (X - c)) + u_c`` fitted by weighted least squares.

    Args:
        points: (B, N, 3) model points; pixels: (B, N, 2) their observed projections; K: (B, 3, 3);
        weights: (B, N) non-negative weights (at least 4 non-coplanar points with weight > 0).

    Returns:
        the pose whose centroid lies at depth 1 / s on the ray of the observed centroid.
    """
    u = normalized_coordinates(pixels, K)
    centre3, centre2 = _weighted_centroid(points, weights), _weighted_centroid(u, weights)
    x = (points - centre3[:, None]) * weights[..., None].sqrt()
    y = (u - centre2[:, None]) * weights[..., None].sqrt()
    gram = x.transpose(1, 2) @ x  # (B, 3, 3)
    eye = torch.eye(3, dtype=gram.dtype, device=gram.device)
    affine = torch.linalg.solve(gram + 1e-9 * eye, x.transpose(1, 2) @ y).transpose(1, 2)  # (B, 2, 3)
    u_svd, s, vh = torch.linalg.svd(affine, full_matrices=False)
    rows = u_svd @ vh  # (B, 2, 3) orthonormal rows
    rotation = torch.cat([rows, torch.linalg.cross(rows[:, 0], rows[:, 1])[:, None]], 1)
    depth = 1.0 / s.mean(-1).clamp(min=1e-12)
    ray = torch.cat([centre2, torch.ones_like(centre2[:, :1])], -1)
    translation = depth[:, None] * ray - (rotation @ centre3[..., None])[..., 0]
    return Pose(rotation, translation)


def dlt_pose(points: Tensor, pixels: Tensor, K: Tensor, weights: Tensor) -> Pose:
    """Calibrated DLT: the null vector of ``u x (R X + t) = 0`` (two rows per point), as :func:`weak_perspective_pose`."""
    u = normalized_coordinates(pixels, K)
    centre = _weighted_centroid(points, weights)
    spread = ((points - centre[:, None]).pow(2).sum(-1) * weights).sum(1) / weights.sum(1).clamp(min=1e-12)
    scale = spread.sqrt().clamp(min=1e-12)
    x = (points - centre[:, None]) / scale[:, None, None]
    one, zero = torch.ones_like(x[..., :1]), torch.zeros_like(x[..., :1])
    zeros = torch.zeros_like(x)
    ux, uy = u[..., :1], u[..., 1:]
    row_x = torch.cat([-x, -one, zeros, zero, ux * x, ux], -1)  # (B, N, 12)
    row_y = torch.cat([zeros, zero, -x, -one, uy * x, uy], -1)
    root = weights[..., None].sqrt()
    system = torch.cat([row_x * root, row_y * root], 1)  # (B, 2N, 12)
    solution = torch.linalg.svd(system.transpose(1, 2) @ system)[2][:, -1].reshape(-1, 3, 4)
    solution = solution * torch.linalg.det(solution[:, :, :3]).sign()[:, None, None]
    rotation, magnitude = _nearest_rotation(solution[:, :, :3])
    # solution = lambda [scale R | R centre + t]: lambda * scale is the mean singular value
    lam = magnitude / scale
    translation = solution[:, :, 3] / lam[:, None] - (rotation @ centre[..., None])[..., 0]
    return Pose(rotation, translation)


def reprojection_error(pose: Pose, points: Tensor, pixels: Tensor, K: Tensor, weights: Tensor) -> Tensor:
    """(B,) weighted mean squared reprojection error in pixels² (infinite behind the camera)."""
    camera = transform_points(points, pose.rotation, pose.translation)
    projected, depth = project_points(camera, K)
    squared = (projected - pixels).pow(2).sum(-1)
    error = (squared * weights).sum(1) / weights.sum(1).clamp(min=1e-12)
    behind = (depth <= 0).any(1) | ~torch.isfinite(error)
    return torch.where(behind, torch.full_like(error, float("inf")), error)


def closed_form_pose(points: Tensor, pixels: Tensor, K: Tensor, weights: Tensor) -> Pose:
    """Per face, the better (smaller reprojection error) of :func:`weak_perspective_pose` and :func:`dlt_pose`.
    Computed in float64; returned in the dtype of ``points``."""
    dtype = points.dtype
    points, pixels, K, weights = (value.double() for value in (points, pixels, K, weights))
    candidates = [weak_perspective_pose(points, pixels, K, weights), dlt_pose(points, pixels, K, weights)]
    errors = torch.stack([reprojection_error(p, points, pixels, K, weights) for p in candidates])
    pick = errors.argmin(0)  # (B,)
    rotation = torch.where(pick[:, None, None] == 1, candidates[1].rotation, candidates[0].rotation)
    translation = torch.where(pick[:, None] == 1, candidates[1].translation, candidates[0].translation)
    return Pose(rotation.to(dtype), translation.to(dtype))
