"""A learned low-rank per-vertex albedo model for face models that have none (ICT, FLAME):
albedo = mean + sum_k c_k basis_k, trained jointly with the encoder and kept smooth over the mesh."""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Initial albedo: a mid skin tone (linear RGB in [0, 1]).
SKIN_TONE = (0.62, 0.45, 0.38)


def mesh_edges(faces: Tensor) -> Tensor:
    """(E, 2) unique undirected edges of triangles ``faces`` (F, 3)."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(1).values
    return torch.unique(edges, dim=0)


class LearnedAlbedo(nn.Module):
    """Per-vertex albedo ``mean + coefficients @ basis``: (B, rank) -> (B, V, 3).

    Args:
        num_vertices: V; faces: (F, 3) triangles, for the smoothness term.
        rank: number of basis vectors (the size of the code's albedo part).
    """

    def __init__(self, num_vertices: int, faces: Tensor, rank: int = 10) -> None:
        super().__init__()
        self.rank = rank
        self.mean = nn.Parameter(torch.tensor(SKIN_TONE).repeat(num_vertices, 1))
        self.basis = nn.Parameter(0.01 * torch.randn(rank, num_vertices, 3))
        self.register_buffer("edges", mesh_edges(faces), persistent=False)

    def forward(self, coefficients: Tensor) -> Tensor:
        return self.mean + torch.einsum("bk,kvc->bvc", coefficients, self.basis)

    def smoothness(self) -> Tensor:
        """Mean squared difference across mesh edges of the mean and of each basis vector."""
        a, b = self.edges.unbind(1)
        fields = torch.cat([self.mean[None], self.basis])
        return (fields[:, a] - fields[:, b]).pow(2).sum(-1).mean()
