"""From Fragments to pixels: attribute interpolation, UV textures, SH shading, compositing, debug images."""

from __future__ import annotations

import torch
from torch import Tensor

from facegen.geometry.sh import sh_basis, sh_shading
from facegen.render.settings import Fragments, covered_pixels, packed_corners


def _scatter_pixels(fragments: Fragments, covered: Tensor, values: Tensor) -> Tensor:
    batch, height, width = fragments.pix_to_face.shape
    out = values.new_zeros(batch * height * width, values.shape[-1]).index_copy(0, covered, values)
    return out.reshape(batch, height, width, values.shape[-1])


def packed_vertex_attributes(
    fragments: Fragments, faces: Tensor, attributes: Tensor
) -> tuple[Tensor, Tensor]:
    """Barycentric interpolation of per-vertex ``attributes`` (B, V, C) at the covered pixels only: their flat
    indices (N,) into (B, H, W) and the values (N, C)."""
    _, num_vertices, channels = attributes.shape
    covered, packed = covered_pixels(fragments.pix_to_face)
    corner_ids, _ = packed_corners(packed, faces, num_vertices)
    corners = (
        attributes.reshape(-1, channels).index_select(0, corner_ids.reshape(-1)).reshape(-1, 3, channels)
    )
    bary = fragments.bary.reshape(-1, 3).index_select(0, covered)
    return covered, (corners * bary.unsqueeze(-1)).sum(1)


def interpolate_vertex_attributes(fragments: Fragments, faces: Tensor, attributes: Tensor) -> Tensor:
    """Barycentric interpolation of per-vertex ``attributes`` (B, V, C) -> (B, H, W, C), zero on background."""
    return _scatter_pixels(fragments, *packed_vertex_attributes(fragments, faces, attributes))


def shade_pixels(
    fragments: Fragments, faces: Tensor, colours: Tensor, normals: Tensor, sh_coeffs: Tensor
) -> Tensor:
    """Per-pixel Lambertian SH shading (B, H, W, 3), zero on background: albedo ``colours`` and ``normals``
    (B, V, 3) interpolated, normals renormalised and lit by ``sh_coeffs`` (B, 27), at covered pixels only."""
    batch, height, width = fragments.pix_to_face.shape
    covered, attributes = packed_vertex_attributes(fragments, faces, torch.cat([colours, normals], -1))
    basis = sh_basis(torch.nn.functional.normalize(attributes[:, 3:], dim=-1, eps=1e-12))  # (N, 9)
    counts = torch.bincount(covered // (height * width), minlength=batch).tolist()  # covered is image-major
    gamma = sh_coeffs.reshape(batch, 3, 9)
    parts = [part @ gamma[i].T for i, part in enumerate(basis.split(counts))]
    irradiance = torch.cat(parts) if parts else basis.new_zeros(0, 3)  # (N, 3); no part for B = 0
    return _scatter_pixels(fragments, covered, attributes[:, :3] * irradiance)


def interpolate_face_corners(fragments: Fragments, corner_values: Tensor) -> Tensor:
    """Interpolation of per-corner values (F, 3, C) shared by the batch -> (B, H, W, C), zero on background."""
    num_faces, _, channels = corner_values.shape
    covered, packed = covered_pixels(fragments.pix_to_face)
    corners = (
        corner_values.reshape(num_faces, 3 * channels)
        .index_select(0, packed % num_faces)
        .reshape(-1, 3, channels)
    )
    bary = fragments.bary.reshape(-1, 3).index_select(0, covered)
    return _scatter_pixels(fragments, covered, (corners * bary.unsqueeze(-1)).sum(1))


def sample_uv_texture(fragments: Fragments, uv_coords: Tensor, uv_faces: Tensor, texture: Tensor) -> Tensor:
    """Bilinear lookup of a UV texture with per-corner UVs (seams allowed).

    Args:
        uv_coords: (T, 2) in [0, 1], v up (PyTorch3D TexturesUV: texture row 0 is v = 1).
        uv_faces: (F, 3) indices into ``uv_coords``, one triple per mesh face.
        texture: (B, C, Ht, Wt).

    Returns:
        (B, H, W, C) texture colour, zero on background.
    """
    pixel_uv = interpolate_face_corners(fragments, uv_coords[uv_faces])  # (B, H, W, 2)
    grid = torch.stack([pixel_uv[..., 0] * 2 - 1, 1 - pixel_uv[..., 1] * 2], -1)
    sampled = torch.nn.functional.grid_sample(
        texture, grid, mode="bilinear", align_corners=True, padding_mode="border"
    )
    return sampled.permute(0, 2, 3, 1) * fragments.mask.unsqueeze(-1)


def shade_sh(albedo: Tensor, normals: Tensor, sh_coeffs: Tensor) -> Tensor:
    """Lambertian SH shading ``albedo * irradiance(normals)``: (B, ..., 3) each, sh_coeffs (B, 27)."""
    return albedo * sh_shading(torch.nn.functional.normalize(normals, dim=-1, eps=1e-12), sh_coeffs)


def composite(colour: Tensor, mask: Tensor, background: Tensor | float | None = None) -> Tensor:
    """Image (B, C, H, W) of ``colour`` (B, H, W, C) where ``mask`` (B, H, W), else ``background``.

    ``background``: None (black), a float, a (C,) colour, or an image (B, C, H, W).
    """
    image = colour.permute(0, 3, 1, 2)
    if background is None:
        return image * mask.unsqueeze(1)
    background = torch.as_tensor(background, dtype=image.dtype, device=image.device)
    if background.dim() == 1:
        background = background.reshape(1, -1, 1, 1)
    return torch.where(mask.unsqueeze(1), image, background.expand_as(image))


def depth_image(fragments: Fragments) -> Tensor:
    """(B, 1, H, W) depth normalised to [0, 1] over each image's covered pixels (near = 1, far = 0; 0 outside)."""
    zbuf, mask = fragments.zbuf, fragments.mask
    large = torch.finfo(zbuf.dtype).max
    near = torch.where(mask, zbuf, torch.full_like(zbuf, large)).flatten(1).amin(1).reshape(-1, 1, 1)
    far = torch.where(mask, zbuf, torch.full_like(zbuf, -large)).flatten(1).amax(1).reshape(-1, 1, 1)
    scaled = (far - zbuf) / (far - near).clamp(min=1e-12)
    return torch.where(mask, 0.1 + 0.9 * scaled.clamp(0, 1), torch.zeros_like(zbuf)).unsqueeze(1)


def normal_image(fragments: Fragments, faces: Tensor, vertex_normals: Tensor) -> Tensor:
    """(B, 3, H, W) camera-frame normals mapped to RGB (n + 1) / 2, black outside the mesh."""
    normals = torch.nn.functional.normalize(
        interpolate_vertex_attributes(fragments, faces, vertex_normals), dim=-1
    )
    return composite((normals + 1) / 2, fragments.mask)
