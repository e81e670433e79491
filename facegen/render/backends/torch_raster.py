"""A differentiable hard rasterizer in plain PyTorch (CPU and GPU, no compilation).

1. Project the camera-frame vertices; cull faces nearer than ``znear`` (and back faces when asked).
2. Enumerate, for every face, the pixel centres inside its screen bounding box (a flat, vectorised list).
3. Keep the centres inside the triangle. Edge functions are evaluated once per edge, with the endpoints in
   vertex-index order, so two triangles sharing an edge see bit-identical values of opposite sign; a centre
   exactly on an edge belongs to the triangle for which that edge is a "top-left" edge. So coverage is
   watertight: no gaps and no double coverage on shared edges.
4. Z-buffer: one scatter-min per pixel over int64 keys (float32 depth bits << 32 | packed face index); depth
   ties go to the lower face index.
5. Barycentrics and depth are recomputed from ``pix_to_face`` with autograd on, so gradients with respect to
   vertex positions flow through them as in PyTorch3D's hard rasterizer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facegen.geometry.camera import project_points
from facegen.render.settings import Fragments, RasterSettings, covered_pixels, packed_corners

_NO_HIT = torch.iinfo(torch.int64).max


def _face_equations(
    corners: Tensor, corner_ids: Tensor, corner_depth: Tensor, perspective_correct: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-face linear forms of the three edge functions and of the inverse depth over the screen.

    Args:
        corners: (M, 3, 2) screen positions; corner_ids: (M, 3) vertex indices; corner_depth: (M, 3) depths.

    Returns:
        edges: (M, 3, 3) rows (a, b, c) with w_i(p) = a p_x + b p_y + c for the edge opposite corner i, signed
            so that w_i > 0 inside; owns: (M, 3) whether a pixel centre exactly on edge i belongs to this face
            (top-left rule); plane: (M, 3) with 1/z(p) = plane . (p_x, p_y, 1), or z(p) itself without
            ``perspective_correct`` (PyTorch3D's zbuf then interpolates z in screen space); area: (M,) signed area.
    """
    start, end = corners[:, [1, 2, 0]], corners[:, [2, 0, 1]]
    swap = corner_ids[:, [1, 2, 0]] > corner_ids[:, [2, 0, 1]]
    first = torch.where(swap.unsqueeze(-1), end, start)  # canonical endpoint order: shared edges get
    edge = torch.where(swap.unsqueeze(-1), start, end) - first  # bit-identical coefficients in both faces
    a, b = -edge[..., 1], edge[..., 0]
    c = edge[..., 1] * first[..., 0] - edge[..., 0] * first[..., 1]
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    sign = torch.where(swap, -1.0, 1.0) * torch.sign(area).unsqueeze(-1)  # exact: multiplication by +-1
    edges = torch.stack([a, b, c], -1) * sign.unsqueeze(-1)
    direction_x, direction_y = edges[..., 1], -edges[..., 0]  # the edge's direction in positive orientation
    owns = (direction_y > 0) | ((direction_y == 0) & (direction_x < 0))
    weights = 1.0 / corner_depth if perspective_correct else corner_depth
    plane = (edges * (weights / area.abs().unsqueeze(-1)).unsqueeze(-1)).sum(1)
    return edges, owns, plane, area


@torch.no_grad()
def _visible_faces(
    screen: Tensor, depth: Tensor, faces: Tensor, principal: Tensor, settings: RasterSettings
) -> Tensor:
    """(B, H, W) packed index of the nearest face covering each pixel centre, -1 for none.

    ``screen`` (B, V, 2) is relative to the principal point ``principal`` (B, 2) (pixel = screen + principal).
    """
    batch = depth.shape[0]
    height, width = settings.image_size
    num_faces = faces.shape[0]
    device = screen.device
    corners = screen.index_select(1, faces.reshape(-1)).reshape(-1, 3, 2)  # (B*F, 3, 2)
    corner_depth = depth.index_select(1, faces.reshape(-1)).reshape(-1, 3)
    edges, owns, plane, area = _face_equations(
        corners, faces.repeat(batch, 1), corner_depth, settings.perspective_correct
    )
    keep = (corner_depth > settings.znear).all(-1) & (area != 0) & torch.isfinite(area)
    if settings.cull_backfaces:
        # OpenCV screen (y down): a face whose counter-clockwise side looks at the camera has negative area.
        keep &= area < 0
    face_principal = principal.repeat_interleave(num_faces, 0)  # (B*F, 2)
    low = (corners.amin(1) + face_principal).ceil().clamp(min=0)
    high = (corners.amax(1) + face_principal).floor()
    high = torch.minimum(high, torch.tensor([width - 1.0, height - 1.0], device=device))
    span = (high - low + 1).clamp(min=0).nan_to_num(0).long() * keep.unsqueeze(-1)
    counts = span[:, 0] * span[:, 1]
    total = int(counts.sum())
    result = torch.full((batch * height * width,), _NO_HIT, dtype=torch.int64, device=device)
    if total > 0:
        candidate = torch.repeat_interleave(
            torch.arange(counts.shape[0], device=device), counts, output_size=total
        )
        first = torch.cumsum(counts, 0) - counts
        offset = torch.arange(total, device=device) - first.index_select(0, candidate)
        span_x = span[:, 0].index_select(0, candidate)
        low_int = low.long().index_select(0, candidate)
        px = low_int[:, 0] + offset % span_x
        py = low_int[:, 1] + offset // span_x
        centre = face_principal.index_select(0, candidate)
        fx = (px.to(corners.dtype) - centre[:, 0]).unsqueeze(-1)
        fy = (py.to(corners.dtype) - centre[:, 1]).unsqueeze(-1)
        equation = edges.index_select(0, candidate)
        w = equation[..., 0] * fx + equation[..., 1] * fy + equation[..., 2]
        inside = ((w > 0) | ((w == 0) & owns.index_select(0, candidate))).all(-1).nonzero().squeeze(1)
        candidate, px, py = candidate[inside], px[inside], py[inside]
        fx, fy = fx[inside, 0], fy[inside, 0]
        abc = plane.index_select(0, candidate)
        plane_value = abc[:, 0] * fx + abc[:, 1] * fy + abc[:, 2]
        pixel_depth = 1.0 / plane_value if settings.perspective_correct else plane_value
        key = (pixel_depth.float().view(torch.int32).long() << 32) | candidate
        pixel = torch.div(candidate, num_faces, rounding_mode="floor") * (height * width) + py * width + px
        result.scatter_reduce_(0, pixel, key, reduce="amin")
    hit = result != _NO_HIT
    pix_to_face = torch.where(hit, result & 0xFFFFFFFF, torch.full_like(result, -1))
    return pix_to_face.reshape(batch, height, width)


def barycentrics_from_faces(
    pix_to_face: Tensor,
    screen: Tensor,
    depth: Tensor,
    faces: Tensor,
    principal: Tensor,
    perspective_correct: bool = True,
) -> tuple[Tensor, Tensor]:
    """Differentiable barycentrics (B, H, W, 3) and depth (B, H, W) at the pixel centres of ``pix_to_face``.

    Depth is the barycentric interpolation of the corner depths, as in PyTorch3D: the true depth when
    perspective-correct, the screen-space interpolation of z otherwise.
    """
    batch, height, width = pix_to_face.shape
    covered, packed = covered_pixels(pix_to_face)
    corner_ids, image = packed_corners(packed, faces, depth.shape[1])
    corner_ids = corner_ids.reshape(-1)
    corners = screen.reshape(-1, 2).index_select(0, corner_ids).reshape(-1, 3, 2)  # (N, 3, 2)
    corner_depth = depth.reshape(-1).index_select(0, corner_ids).reshape(-1, 3)  # (N, 3)
    px = (covered % width).to(screen.dtype)
    py = torch.div(covered % (height * width), width, rounding_mode="floor").to(screen.dtype)
    pixel = (torch.stack([px, py], -1) - principal.index_select(0, image)).unsqueeze(1)
    start, end = corners.roll(-1, 1), corners.roll(-2, 1)  # edge i runs from corner i+1 to corner i+2
    edge, rel = end - start, pixel - start
    w = edge[..., 0] * rel[..., 1] - edge[..., 1] * rel[..., 0]
    screen_bary = w / w.sum(-1, keepdim=True)
    if perspective_correct:
        weighted = screen_bary / corner_depth
        bary = weighted / weighted.sum(-1, keepdim=True)
    else:
        bary = screen_bary
    zbuf_values = (bary * corner_depth).sum(-1)  # = 1 / sum(screen_bary / z) when perspective-correct
    bary_full = screen.new_zeros(batch * height * width, 3).index_copy(0, covered, bary)
    zbuf_full = screen.new_full((batch * height * width,), -1.0).index_copy(0, covered, zbuf_values)
    return bary_full.reshape(batch, height, width, 3), zbuf_full.reshape(batch, height, width)


def rasterize_torch(vertices: Tensor, faces: Tensor, K: Tensor, settings: RasterSettings) -> Fragments:
    """Rasterize camera-frame ``vertices`` (B, V, 3) with ``faces`` (F, 3) and intrinsics ``K`` (B, 3, 3)."""
    principal = K[:, :2, 2].contiguous()  # gathered per pixel: a strided view gathers ~50x slower
    centred_K = K.clone()
    centred_K[:, :2, 2] = 0  # screen positions relative to the principal point keep float32 precise
    screen, depth = project_points(vertices, centred_K)
    pix_to_face = _visible_faces(screen.detach(), depth.detach(), faces, principal, settings)
    bary, zbuf = barycentrics_from_faces(
        pix_to_face, screen, depth, faces, principal.detach(), settings.perspective_correct
    )
    return Fragments(pix_to_face, bary, zbuf)
