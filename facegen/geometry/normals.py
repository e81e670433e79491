"""Face and area-weighted vertex normals of triangle meshes."""

from __future__ import annotations

import torch
from torch import Tensor


def face_normals(vertices: Tensor, faces: Tensor, normalize: bool = True) -> Tensor:
    """(B, V, 3) vertices, (F, 3) faces -> (B, F, 3) normals; unnormalised their length is twice the area.

    Counter-clockwise triangles (seen from outside) get outward normals in a right-handed frame.
    """
    v0, v1, v2 = (vertices[:, faces[:, i]] for i in range(3))
    normals = torch.cross(v1 - v0, v2 - v0, dim=-1)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12) if normalize else normals


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(B, V, 3) vertices, (F, 3) faces -> (B, V, 3) unit normals, the area-weighted mean of adjacent faces."""
    weighted = face_normals(vertices, faces, normalize=False)
    normals = torch.zeros_like(vertices)
    for corner in range(3):
        normals = normals.index_add(1, faces[:, corner], weighted)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)
