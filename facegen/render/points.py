"""MoFA's point-based image formation: sample the input image at the projected, visible vertices."""

from __future__ import annotations

import torch
from torch import Tensor

from facegen.render.settings import Fragments


def sample_image_at_points(image: Tensor, pixels: Tensor) -> Tensor:
    """Bilinear, differentiable lookup of ``image`` (B, C, H, W) at ``pixels`` (B, N, 2) (x, y; OpenCV pixel
    centres) -> (B, N, C). Points outside the image read the nearest border value."""
    height, width = image.shape[-2:]
    scale = torch.tensor(
        [2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=pixels.dtype, device=pixels.device
    )
    grid = (pixels * scale - 1).unsqueeze(2)  # (B, N, 1, 2)
    sampled = torch.nn.functional.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", align_corners=True, padding_mode="border"
    )
    return sampled[..., 0].transpose(1, 2)


def visible_points(
    vertices: Tensor,
    normals: Tensor,
    pixels: Tensor,
    image_size: tuple[int, int],
    fragments: Fragments | None = None,
    depth_tolerance: float | Tensor = 0.0,
) -> Tensor:
    """(B, N) bool: the vertex faces the camera, projects inside the image and (with ``fragments``) is not hidden.

    Args:
        vertices: (B, N, 3) camera frame; normals: (B, N, 3) camera-frame vertex normals.
        pixels: (B, N, 2) projections; image_size: (H, W).
        fragments: rasterization of the same mesh; when given, a vertex deeper than the z-buffer at its nearest
            pixel by more than ``depth_tolerance`` (model units; a scalar or (B, 1) per mesh) is occluded.
    """
    facing = (normals * vertices).sum(-1) < 0  # the normal points towards the camera centre
    x, y = pixels.unbind(-1)
    return unoccluded(facing, x, y, vertices[..., 2], image_size, fragments, depth_tolerance)


def unoccluded(
    candidates: Tensor,
    x: Tensor,
    y: Tensor,
    depth: Tensor,
    image_size: tuple[int, int],
    fragments: Fragments | None = None,
    depth_tolerance: float | Tensor = 0.0,
) -> Tensor:
    """(B, N) bool: the ``candidates`` (B, N) bool whose projection ``x``, ``y`` (B, N) pixels lies inside the
    image of ``image_size`` (H, W), whose camera-frame ``depth`` (B, N) is positive and (with ``fragments``) at
    most ``depth_tolerance`` behind the z-buffer at the nearest pixel (see :func:`visible_points`)."""
    height, width = image_size
    inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    visible = candidates & inside & (depth > 0)
    if fragments is not None:
        col = x.round().long().clamp(0, width - 1)
        row = y.round().long().clamp(0, height - 1)
        flat = (row * width + col).reshape(x.shape[0], -1)
        zbuf = fragments.zbuf.reshape(x.shape[0], -1).gather(1, flat)
        covered = fragments.mask.reshape(x.shape[0], -1).gather(1, flat)
        visible &= covered & (depth <= zbuf + depth_tolerance)
    return visible
