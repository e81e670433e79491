"""Weights of MoFA's loss terms, shared by training and test-time refinement."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LossWeights:
    """Weights of MoFA's loss terms (each term is also logged unweighted as ``train/<name>``). The landmark
    term is in (pixels at 224²)², the priors are squared norms of coefficients in standard deviations."""

    photometric: float = 1.0
    landmark: float = 2e-3
    shape: float = 1e-3
    expression: float = 1e-3
    albedo: float = 1e-3
    light: float = 1e-2
    albedo_smoothness: float = 1.0
    ssim: float = 0.0
