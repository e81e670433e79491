"""``UVLayout``: a face model's UV layout rasterized once at a texture resolution, so per-vertex values
(positions, normals, albedo) become per-texel images by barycentric interpolation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from facegen.render.rasterize import rasterize
from facegen.render.settings import Fragments, RasterSettings
from facegen.render.shading import interpolate_vertex_attributes

#: Mean mirror distance (fraction of the mesh's size) below which a UV layout counts as left-right symmetric.
SYMMETRY_TOLERANCE = 0.02


class UVLayout(nn.Module):
    """The texels of a ``size`` x ``size`` texture that the mesh covers, with their face and barycentrics.

    Texture row 0 is v = 1 (PyTorch3D's TexturesUV and OBJ's convention once saved as an image) and texel
    (row, col) sits at u = col / (size - 1), v = 1 - row / (size - 1), matching ``sample_uv_texture``.

    Args:
        faces: (F, 3) mesh triangles; uv_coords: (T, 2) in [0, 1]; uv_faces: (F, 3) indices into ``uv_coords``.
        size: texture side in texels.
    """

    def __init__(self, faces: Tensor, uv_coords: Tensor, uv_faces: Tensor, size: int = 512) -> None:
        super().__init__()
        self.size = size
        points = torch.cat([uv_coords[:, :1], 1 - uv_coords[:, 1:2], torch.ones_like(uv_coords[:, :1])], 1)
        K = torch.diag(torch.tensor([size - 1.0, size - 1.0, 1.0], dtype=points.dtype))
        settings = RasterSettings(image_size=(size, size), perspective_correct=False)
        fragments = rasterize(points.unsqueeze(0).float(), uv_faces.long(), K.float(), settings)
        self.register_buffer("faces", faces.long(), persistent=False)
        self.register_buffer("pix_to_face", fragments.pix_to_face[0], persistent=False)  # (S, S) mesh face
        self.register_buffer("bary", fragments.bary[0].detach(), persistent=False)  # (S, S, 3)

    @property
    def mask(self) -> Tensor:
        """(S, S) bool: texels inside the layout."""
        return self.pix_to_face >= 0

    def _fragments(self, batch: int) -> Fragments:
        """The layout's fragments repeated for ``batch`` meshes (packed face indices b * F + f)."""
        offsets = torch.arange(batch, device=self.pix_to_face.device).view(-1, 1, 1) * self.faces.shape[0]
        pix_to_face = torch.where(self.mask, self.pix_to_face + offsets, -1)
        bary = self.bary.expand(batch, *self.bary.shape)
        return Fragments(pix_to_face, bary, torch.zeros_like(pix_to_face, dtype=bary.dtype))

    def bake(self, attributes: Tensor) -> Tensor:
        """Per-vertex ``attributes`` (B, V, C) -> (B, C, S, S) texture (zero outside the layout)."""
        texels = interpolate_vertex_attributes(self._fragments(attributes.shape[0]), self.faces, attributes)
        return texels.permute(0, 3, 1, 2)

    def is_symmetric(self, mean_vertices: Tensor) -> bool:
        """Whether the texel at (1 - u, v) holds the left-right mirror (x -> -x) of the surface point at (u, v),
        to within ``SYMMETRY_TOLERANCE`` of the mesh size, so ``texture.flip(-1)`` is the mirrored face.
        ``mean_vertices``: (V, 3) in model space, x = left-right."""
        positions = self.bake(mean_vertices.unsqueeze(0))[0]  # (3, S, S)
        mirrored = positions.flip(-1) * torch.tensor([-1.0, 1.0, 1.0], device=positions.device).view(3, 1, 1)
        both = self.mask & self.mask.flip(-1)
        if both.sum() < 0.9 * self.mask.sum():
            return False
        extent = (mean_vertices.max(0).values - mean_vertices.min(0).values).norm()
        return bool((positions - mirrored).norm(dim=0)[both].mean() <= SYMMETRY_TOLERANCE * extent)
