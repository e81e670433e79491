"""The renderer's settings and the rasterizer's output record (PyTorch3D's semantics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor

BACKENDS = ("torch", "pytorch3d", "auto")


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
    backend: str = "torch"
    perspective_correct: bool = True
    cull_backfaces: bool = False
    znear: float = 1e-3

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"renderer backend must be one of {BACKENDS}, got {self.backend!r}")
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            raise ValueError(f"image_size must be (H, W) with positive sizes, got {self.image_size}")
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
