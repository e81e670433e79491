"""Second-order (3-band) spherical-harmonics Lambertian shading, as in MoFA.

The irradiance of a convex Lambertian surface with unit normal n under distant light whose radiance has
SH coefficients L_lm (l <= 2) is E(n) = sum_lm A_l L_lm Y_lm(n) with the clamped-cosine kernel
A_0 = pi, A_1 = 2 pi / 3, A_2 = pi / 4 (Ramamoorthi & Hanrahan 2001). :func:`sh_basis` returns
H_lm(n) = A_l Y_lm(n), so the 27 lighting coefficients (9 per RGB channel) are radiance coefficients and
``shading = sum_k gamma_k H_k(n)``; colour = albedo * shading.

Order of the 9 functions: Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy), Y2-1 (yz), Y20 (3z^2-1), Y21 (xz),
Y22 (x^2-y^2), in the frame of the normals given (facegen uses the OpenCV camera frame).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SH_COEFFS = 27

_Y0 = 0.5 / math.sqrt(math.pi)
_Y1 = math.sqrt(3 / (4 * math.pi))
_Y2 = 0.5 * math.sqrt(15 / math.pi)
_Y20 = 0.25 * math.sqrt(5 / math.pi)
_Y22 = 0.25 * math.sqrt(15 / math.pi)
_A0, _A1, _A2 = math.pi, 2 * math.pi / 3, math.pi / 4


def sh_basis(normals: Tensor, lambertian: bool = True) -> Tensor:
    """(..., 3) unit normals -> (..., 9) real SH values, times the Lambertian kernel A_l when ``lambertian``."""
    x, y, z = normals.unbind(-1)
    a0, a1, a2 = (_A0, _A1, _A2) if lambertian else (1.0, 1.0, 1.0)
    return torch.stack(
        [
            torch.full_like(x, a0 * _Y0),
            a1 * _Y1 * y,
            a1 * _Y1 * z,
            a1 * _Y1 * x,
            a2 * _Y2 * x * y,
            a2 * _Y2 * y * z,
            a2 * _Y20 * (3 * z * z - 1),
            a2 * _Y2 * x * z,
            a2 * _Y22 * (x * x - y * y),
        ],
        -1,
    )


def sh_shading(normals: Tensor, coeffs: Tensor) -> Tensor:
    """Per-point RGB irradiance.

    Args:
        normals: (B, N, 3) unit normals (or (B, H, W, 3)).
        coeffs: (B, 27) radiance coefficients, laid out as 9 per channel: [R0..R8, G0..G8, B0..B8].

    Returns:
        (B, N, 3) (or (B, H, W, 3)) shading, to multiply with albedo.
    """
    return shade(sh_basis(normals), coeffs)


def shade(basis: Tensor, coeffs: Tensor) -> Tensor:
    """Per-point RGB irradiance from the points' SH ``basis`` (B, ..., 9) (:func:`sh_basis` of their normals,
    e.g. computed once for a fixed geometry) and radiance ``coeffs`` (B, 27): (B, ..., 3)."""
    gamma = coeffs.reshape(coeffs.shape[0], 3, 9)
    flat = basis.reshape(basis.shape[0], math.prod(basis.shape[1:-1]), 9)  # explicit: B may be 0
    return (flat @ gamma.transpose(1, 2)).reshape(*basis.shape[:-1], 3)


def ambient_sh(batch: int, intensity: float = 1.0, device=None, dtype=None) -> Tensor:
    """(B, 27) coefficients of uniform white light whose shading equals ``intensity`` for every normal."""
    coeffs = torch.zeros(batch, 3, 9, device=device, dtype=dtype)
    coeffs[:, :, 0] = intensity / (_A0 * _Y0)
    return coeffs.reshape(batch, SH_COEFFS)
