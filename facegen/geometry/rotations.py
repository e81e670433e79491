"""Rotations: axis-angle (via Kornia) and Euler angles to and from 3x3 matrices. Angles in radians."""

from __future__ import annotations

import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from torch import Tensor


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """(B, 3) axis-angle (direction = axis, norm = angle in radians) -> (B, 3, 3) rotation matrices."""
    return axis_angle_to_rotation_matrix(axis_angle)


def _axis_rotation(angle: Tensor, axis: int) -> Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = (one, zero, zero, zero, cos, -sin, zero, sin, cos)
    elif axis == 1:
        rows = (cos, zero, sin, zero, one, zero, -sin, zero, cos)
    else:
        rows = (cos, -sin, zero, sin, cos, zero, zero, zero, one)
    return torch.stack(rows, -1).reshape(*angle.shape, 3, 3)


def euler_to_matrix(angles: Tensor) -> Tensor:
    """(B, 3) Euler angles (pitch about x, yaw about y, roll about z) -> (B, 3, 3) ``R = Rz(roll) Ry(yaw) Rx(pitch)``."""
    return (
        _axis_rotation(angles[..., 2], 2)
        @ _axis_rotation(angles[..., 1], 1)
        @ _axis_rotation(angles[..., 0], 0)
    )


def matrix_to_euler(matrix: Tensor) -> Tensor:
    """Inverse of :func:`euler_to_matrix`: (B, 3, 3) -> (B, 3) (pitch, yaw, roll), yaw in [-pi/2, pi/2]."""
    yaw = torch.asin((-matrix[..., 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(matrix[..., 2, 1], matrix[..., 2, 2])
    roll = torch.atan2(matrix[..., 1, 0], matrix[..., 0, 0])
    return torch.stack([pitch, yaw, roll], -1)


def rotation_angle_between(first: Tensor, second: Tensor) -> Tensor:
    """Geodesic angle in radians between rotations (..., 3, 3): ``acos((trace(first^T second) - 1) / 2)``,
    independent of how either was parametrised (Euler angles alias: (p, y, r) ~ (p + pi, pi - y, r + pi))."""
    trace = (first.transpose(-1, -2) @ second).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.acos(((trace - 1) / 2).clamp(-1.0, 1.0))
