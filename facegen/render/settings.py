"""The renderer's settings and the rasterizer's output record (PyTorch3D's semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

from facegen.errors import ConfigError

#: Rasterizer backends (see :class:`RasterSettings`).
Backend = Literal["torch", "pytorch3d", "auto"]
BACKENDS = get_args(Backend)


@dataclass
class RasterSettings:
    """How meshes are rasterized.

    Attributes:
        image_size: (H, W) in pixels.
        backend: ``torch`` (built in, runs everywhere), ``pytorch3d`` (MeshRasterizer; needs PyTorch3D) or
            ``auto`` (PyTorch3D when importable, else torch).
        perspective_correct: barycentrics corrected for perspective (True) or screen-space (False).
        cull_backfaces: skip triangles whose front side (counter-clockwise winding) faces away from the camera.
        znear: triangles with any vertex nearer than this camera-frame depth (model units) are culled.
    """

    image_size: tuple[int, int] = (224, 224)
    backend: Backend = "torch"
    perspective_correct: bool = True
    cull_backfaces: bool = False
    znear: float = 1e-3

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"renderer backend must be one of {BACKENDS}, got {self.backend!r}")
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ConfigError(f"image_size must be (H, W) with positive sizes, got {self.image_size}")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))


class Fragments(NamedTuple):
    """Per-pixel rasterization result, one face per pixel.

    pix_to_face: (B, H, W) long, index into the PACKED faces (``b * F + f``), -1 for background.
    bary: (B, H, W, 3) barycentric coordinates of the pixel centre in that face (0 for background),
        differentiable with respect to the vertex positions.
    zbuf: (B, H, W) camera-frame depth of the surface at the pixel centre, -1 for background.
    """

    pix_to_face: Tensor
    bary: Tensor
    zbuf: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where a face covers the pixel."""
        return self.pix_to_face >= 0


def covered_pixels(pix_to_face: Tensor) -> tuple[Tensor, Tensor]:
    """Flat indices (N,) of the covered pixels of ``pix_to_face`` (B, H, W) and their packed faces (N,)."""
    flat = pix_to_face.reshape(-1)
    covered = torch.nonzero(flat >= 0).squeeze(1)
    return covered, flat.index_select(0, covered)


def packed_corners(packed: Tensor, faces: Tensor, num_vertices: int) -> tuple[Tensor, Tensor]:
    """Corner indices (N, 3) into the packed vertices (``b * V + v``) of packed faces (N,), and their images (N,)."""
    image = torch.div(packed, faces.shape[0], rounding_mode="floor")
    corners = faces.index_select(0, packed - image * faces.shape[0]) + (image * num_vertices).unsqueeze(-1)
    return corners, image
