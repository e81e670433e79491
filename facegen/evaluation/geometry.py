"""Geometry error of reconstructed faces against ground truth, after rigid (Kabsch) alignment."""

from __future__ import annotations

import torch
from torch import Tensor


def similarity_transform(
    source: Tensor, target: Tensor, weights: Tensor | None = None, scale: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """The least-squares (weighted by ``weights`` (N,) when given) rotation (B, 3, 3), translation (B, 1, 3) and
    uniform scale (B, 1, 1) (1 unless ``scale``) taking ``source`` (B, N, 3) onto ``target`` (B, N, 3), without
    reflection (Umeyama 1991): ``target ≈ scale * source @ rotation^T + translation``."""
    w = (
        torch.ones(source.shape[1], dtype=source.dtype, device=source.device)
        if weights is None
        else weights.to(source)
    )
    w = (w / w.sum()).reshape(1, -1, 1)
    mean_s, mean_t = (source * w).sum(1, keepdim=True), (target * w).sum(1, keepdim=True)
    covariance = ((target - mean_t) * w).transpose(1, 2) @ (source - mean_s)  # (B, 3, 3)
    u, singular, vt = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(u @ vt))
    diagonal = torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], -1)
    rotation = u @ torch.diag_embed(diagonal) @ vt
    factor = torch.ones_like(sign)
    if scale:
        variance = ((source - mean_s).pow(2).sum(-1, keepdim=True) * w).sum((1, 2))
        factor = (singular * diagonal).sum(-1) / variance.clamp(min=1e-12)
    factor = factor.reshape(-1, 1, 1)
    return rotation, mean_t - factor * mean_s @ rotation.transpose(1, 2), factor


def rigid_align(source: Tensor, target: Tensor, weights: Tensor | None = None, scale: bool = False) -> Tensor:
    """``source`` (B, N, 3) rotated and translated (and uniformly scaled when ``scale``: a similarity, as in
    the NoW benchmark) onto ``target`` (B, N, 3) by :func:`similarity_transform`."""
    rotation, translation, factor = similarity_transform(source, target, weights, scale)
    return factor * source @ rotation.transpose(1, 2) + translation


def vertex_error(
    prediction: Tensor, target: Tensor, region: Tensor | None = None, scale: bool = False
) -> Tensor:
    """(B,) mean per-vertex Euclidean distance after rigid (``scale``: similarity) alignment, over ``region``
    (N,) bool if given."""
    aligned = rigid_align(prediction, target, None if region is None else region.float(), scale)
    distance = (aligned - target).norm(dim=-1)
    if region is None:
        return distance.mean(-1)
    return distance[:, region].mean(-1)
