"""Sparse 68-landmark alignment loss with per-landmark weights."""

from __future__ import annotations

import torch
from torch import Tensor

from facegen.errors import ConfigError
from facegen.geometry.landmarks import JAW, NUM_LANDMARKS

#: The crop size (pixels) at which landmark distances are measured, at every resolution: MoFA's landmark term,
#: the fitting stages' residuals and their robust scales are all in pixels at this size.
REFERENCE_SIZE = 224.0


def reference_scale(image_size: int) -> float:
    """Pixels of a ``image_size``² crop -> pixels at :data:`REFERENCE_SIZE`."""
    return REFERENCE_SIZE / image_size


def landmark_weights(jaw: float = 0.5, inner: float = 1.0, custom: list[float] | None = None) -> Tensor:
    """(68,) weights: ``custom`` when given (68 values), else ``jaw`` for the contour (0-16), ``inner`` for the
    rest. The jaw contour of a photo follows the silhouette, not fixed vertices, so it gets less trust."""
    if custom is not None:
        if len(custom) != NUM_LANDMARKS:
            raise ConfigError(f"landmark weights must have 68 values, got {len(custom)}")
        return torch.tensor(custom, dtype=torch.float32)
    weights = torch.full((NUM_LANDMARKS,), float(inner))
    weights[torch.as_tensor(JAW)] = jaw
    return weights


def landmark_loss(
    prediction: Tensor, target: Tensor, weights: Tensor, image_size: int, per_face: bool = False
) -> Tensor:
    """Weighted mean squared distance between landmarks (B, 68, 2) in pixels, in (pixels at
    :data:`REFERENCE_SIZE`)², so a weight means the same at every resolution. ``weights``: (68,) or per face
    (B, 68); each face's mean is normalised by its own weights, then the faces are averaged (``per_face``: (B,),
    not averaged)."""
    squared = ((prediction - target) * reference_scale(image_size)).pow(2).sum(-1)  # (B, 68)
    weights = weights.to(squared).expand_as(squared)
    faces = (squared * weights).sum(-1) / weights.sum(-1).clamp(min=1e-12)
    return faces if per_face else faces.mean()


def landmark_error(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Mean Euclidean error in pixels and NME (normalised by the outer-eye-corner distance), each (B,)."""
    distance = (prediction - target).norm(dim=-1).mean(-1)
    inter_ocular = (target[:, 36] - target[:, 45]).norm(dim=-1).clamp(min=1e-6)
    return distance, distance / inter_ocular
