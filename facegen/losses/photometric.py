"""Dense photometric losses: a robust per-pixel (or per-point) colour distance, masked and averaged."""

from __future__ import annotations

from typing import Literal, get_args

import kornia
import torch
from torch import Tensor

from facegen.errors import ConfigError

#: Colour distances of the photometric term (see :func:`colour_distance`).
Norm = Literal["l21", "l2", "l1", "charbonnier"]
NORMS = get_args(Norm)


def colour_distance(prediction: Tensor, target: Tensor, norm: Norm = "l21", eps: float = 1e-6) -> Tensor:
    """Per-element distance over the channel axis.

    Args:
        prediction, target: (B, 3, H, W) images or (B, N, 3) colours (channel axis 1 or -1 respectively).
        norm: ``l21`` (Euclidean norm of the RGB difference, MoFA/Deep3D's robust choice), ``l2`` (squared),
            ``l1`` (sum of absolute differences) or ``charbonnier`` (Kornia's, per channel, summed).

    Returns:
        (B, H, W) or (B, N).
    """
    channel = 1 if prediction.dim() == 4 else -1
    difference = prediction - target
    if norm == "l21":
        return torch.sqrt(difference.pow(2).sum(channel) + eps)
    if norm == "l2":
        return difference.pow(2).sum(channel)
    if norm == "l1":
        return difference.abs().sum(channel)
    if norm == "charbonnier":
        return kornia.losses.charbonnier_loss(prediction, target, reduction="none").sum(channel)
    raise ConfigError(f"photometric norm must be one of {NORMS}, got {norm!r}")


#: How a masked mean averages over a batch: ``batch`` (one mean over every face's masked values) or ``image``
#: (each face's own masked mean, then their average: every face counts the same however much of it is seen).
Average = Literal["batch", "image"]
#: :data:`Average`, or ``face``: each face's own masked mean, not averaged (B,) (each face's own objective).
Reduction = Literal["batch", "image", "face"]


def masked_mean(values: Tensor, mask: Tensor, eps: float = 1e-6, average: Reduction = "batch") -> Tensor:
    """Mean of ``values`` (B, ...) weighted by ``mask`` of the same shape (float or bool): over everything, or
    (``average="image"``) per image and then over the batch (an image with an empty mask counts as 0), or
    (``average="face"``) per image, (B,)."""
    mask = mask.to(values.dtype)
    if average == "batch":
        return (values * mask).sum() / mask.sum().clamp(min=eps)
    dims = tuple(range(1, values.dim()))
    per_face = (values * mask).sum(dims) / mask.sum(dims).clamp(min=eps)
    return per_face if average == "face" else per_face.mean()


def photometric_loss(
    prediction: Tensor, target: Tensor, mask: Tensor, norm: Norm = "l21", average: Reduction = "batch"
) -> Tensor:
    """Masked mean colour distance. ``mask``: (B, 1, H, W) / (B, H, W) for images, (B, N) for points."""
    distance = colour_distance(prediction, target, norm)
    return masked_mean(distance, mask.reshape(distance.shape), average=average)


def ssim_loss(
    prediction: Tensor, target: Tensor, mask: Tensor, window: int = 7, average: Reduction = "batch"
) -> Tensor:
    """Kornia's structural dissimilarity (1 - SSIM) / 2, averaged over ``mask`` (B, 1, H, W)."""
    dissimilarity = kornia.losses.ssim_loss(prediction, target, window, reduction="none").mean(
        1, keepdim=True
    )
    return masked_mean(dissimilarity, mask, average=average)
