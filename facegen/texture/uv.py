"""``UVLayout``: a face model's UV layout rasterized once at a texture resolution, so per-vertex values
(positions, normals, albedo) become per-texel images by barycentric interpolation."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from facegen.render.rasterize import rasterize
from facegen.render.settings import RasterSettings

# torch flags every CSR tensor as beta; baking uses only the long-supported sparse x dense product
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

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
        pix_to_face, bary = fragments.pix_to_face[0], fragments.bary[0].detach()
        texels = (pix_to_face >= 0).flatten().nonzero()[:, 0]
        self.register_buffer("faces", faces.long(), persistent=False)
        self.register_buffer("pix_to_face", pix_to_face, persistent=False)  # (S, S) mesh face, -1 outside
        self.register_buffer("bary", bary, persistent=False)  # (S, S, 3)
        self.register_buffer("texels", texels, persistent=False)  # (N,) flat indices of the covered texels
        # baking as one sparse product: (N, V) barycentric weights, three per covered texel, in CSR form
        self.register_buffer("bake_rows", torch.arange(len(texels) + 1) * 3, persistent=False)
        texel_vertices = faces.long()[pix_to_face.flatten()[texels]]  # (N, 3)
        self.register_buffer("bake_columns", texel_vertices.flatten(), persistent=False)
        self.register_buffer("bake_weights", bary.reshape(-1, 3)[texels].flatten(), persistent=False)
        self._dilation: dict[tuple[int, torch.device], list[tuple[Tensor, Tensor, Tensor]]] = {}

    @property
    def mask(self) -> Tensor:
        """(S, S) bool: texels inside the layout."""
        return self.pix_to_face >= 0

    def bake_texels(self, attributes: Tensor) -> Tensor:
        """Per-vertex ``attributes`` (B, V, C) -> (B, N, C) at the N covered texels (:attr:`texels`), interpolated
        with each texel's barycentrics: one sparse (N, V) x (V, B*C) product (not differentiable)."""
        batch, vertices, channels = attributes.shape
        weights = torch.sparse_csr_tensor(
            self.bake_rows,
            self.bake_columns,
            self.bake_weights.to(attributes.dtype),
            (len(self.texels), vertices),
            check_invariants=False,
        )
        values = attributes.detach().permute(1, 0, 2).reshape(vertices, batch * channels)
        return torch.sparse.mm(weights, values).reshape(-1, batch, channels).transpose(0, 1)

    def scatter(self, values: Tensor) -> Tensor:
        """Texel values (B, N, C) at :attr:`texels` -> (B, C, S, S) texture, zero outside the layout."""
        batch, _, channels = values.shape
        texture = values.new_zeros(batch, channels, self.size * self.size)
        texture[:, :, self.texels] = values.transpose(1, 2)
        return texture.reshape(batch, channels, self.size, self.size)

    def bake(self, attributes: Tensor) -> Tensor:
        """Per-vertex ``attributes`` (B, V, C) -> (B, C, S, S) texture (zero outside the layout), interpolated
        with each texel's barycentrics; bake several attributes at once by concatenating their channels (not
        differentiable)."""
        return self.scatter(self.bake_texels(attributes))

    def dilation_plan(self, steps: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """For each of ``steps`` one-texel growth rings around the layout: the ring's texels (N,) (flat indices),
        their 3x3 neighbours (N, 9) and the weights (N, 9) averaging the neighbours filled before that ring.
        Depends only on the layout, so it is computed once per ``steps`` and device."""
        key = (steps, self.pix_to_face.device)
        if key not in self._dilation:
            size, filled = self.size, self.mask.clone()
            offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            plan = []
            for _ in range(steps):
                near = torch.nn.functional.max_pool2d(filled[None, None].float(), 3, 1, 1)[0, 0] > 0
                ring = (near & ~filled).flatten().nonzero()[:, 0]
                rows, cols = ring // size, ring % size
                neighbour_rows = torch.stack([rows + dy for dy, _ in offsets], 1)
                neighbour_cols = torch.stack([cols + dx for _, dx in offsets], 1)
                inside = (
                    (neighbour_rows >= 0)
                    & (neighbour_rows < size)
                    & (neighbour_cols >= 0)
                    & (neighbour_cols < size)
                )
                neighbours = neighbour_rows.clamp(0, size - 1) * size + neighbour_cols.clamp(0, size - 1)
                weights = (inside & filled.flatten()[neighbours]).float()
                plan.append((ring, neighbours, weights / weights.sum(1, keepdim=True)))
                filled.view(-1)[ring] = True
            self._dilation[key] = plan
        return self._dilation[key]

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
