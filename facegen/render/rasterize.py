"""``rasterize``: one entry point over the backends, with input checks."""

from __future__ import annotations

import torch
from torch import Tensor

from facegen.render.backends.pytorch3d_raster import pytorch3d_available, rasterize_pytorch3d
from facegen.render.backends.torch_raster import rasterize_torch
from facegen.render.settings import Fragments, RasterSettings


def resolve_backend(name: str) -> str:
    """``torch`` or ``pytorch3d`` for a settings' backend name (``auto`` picks PyTorch3D when importable)."""
    if name == "auto":
        return "pytorch3d" if pytorch3d_available() else "torch"
    if name == "pytorch3d" and not pytorch3d_available():
        raise ImportError(
            "renderer backend 'pytorch3d' needs PyTorch3D, which is not importable; install it from source "
            "(see Install in the README) or set the backend to 'torch' (built in) or 'auto'"
        )
    return name


def rasterize(vertices: Tensor, faces: Tensor, K: Tensor, settings: RasterSettings) -> Fragments:
    """Rasterize a batch of meshes sharing one topology.

    Args:
        vertices: (B, V, 3) in the OpenCV camera frame (x right, y down, z forward), model units.
        faces: (F, 3) long, counter-clockwise seen from outside.
        K: (B, 3, 3) or (3, 3) intrinsics in pixels.
        settings: image size, backend, perspective correction, culling, near plane.

    Returns:
        Fragments with (B, H, W) ``pix_to_face`` (packed, -1 background), (B, H, W, 3) ``bary``, (B, H, W) ``zbuf``.
    """
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be (B, V, 3), got {tuple(vertices.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if not vertices.isfinite().all():
        raise ValueError("vertices passed to the renderer contain NaN or inf")
    K = K if K.dim() == 3 else K.unsqueeze(0)
    K = K.to(vertices.dtype).expand(vertices.shape[0], 3, 3)
    faces = faces.long().to(vertices.device)
    if faces.shape[0] == 0 or vertices.shape[1] == 0:
        return _empty(vertices, settings)
    if resolve_backend(settings.backend) == "pytorch3d":
        return rasterize_pytorch3d(vertices, faces, K, settings)
    return rasterize_torch(vertices, faces, K, settings)


def _empty(vertices: Tensor, settings: RasterSettings) -> Fragments:
    batch, (height, width) = vertices.shape[0], settings.image_size
    zero = vertices.sum() * 0  # keeps the graph, so an empty mesh still gives (zero) gradients
    pix_to_face = vertices.new_full((batch, height, width), -1, dtype=torch.long)
    bary = vertices.new_zeros(batch, height, width, 3) + zero
    return Fragments(pix_to_face, bary, vertices.new_full((batch, height, width), -1.0) + zero)
