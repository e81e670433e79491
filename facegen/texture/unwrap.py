"""Unwrapping a photo into a face model's UV layout through fitted geometry: each texel's surface point is
projected into the photo, tested for visibility, and sampled; hidden texels are filled from the mirrored side
when the layout is symmetric, else from a fallback texture."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from facegen.geometry.camera import project_points
from facegen.render.points import sample_image_at_points, visible_points
from facegen.render.rasterize import rasterize
from facegen.render.settings import Fragments, RasterSettings
from facegen.texture.uv import UVLayout

#: Texels seen at a grazing angle (cosine between normal and view ray below this) count as hidden.
MIN_COSINE = 0.15
#: Depth slack of the occlusion test, as a fraction of the mesh's size.
DEPTH_TOLERANCE = 0.02


class PhotoTexture(NamedTuple):
    """texture (B, 3, S, S) photo colours (0 where unseen); visibility (B, 1, S, S) in [0, 1]: 0 hidden, rising
    to 1 for texels seen head-on (the cosine between normal and view ray, rescaled above ``MIN_COSINE``)."""

    texture: Tensor
    visibility: Tensor


def unwrap_photo(
    layout: UVLayout,
    photo: Tensor,
    vertices: Tensor,
    normals: Tensor,
    K: Tensor,
    image_size: tuple[int, int],
    to_photo: Tensor | None = None,
    fragments: Fragments | None = None,
) -> PhotoTexture:
    """Sample ``photo`` at the surface point of every texel.

    Args:
        layout: the model's UV layout at the texture size.
        photo: (B, 3, H, W) the image to sample: the crop the geometry was fitted to, or the original photo.
        vertices, normals: (B, V, 3) fitted mesh in the OpenCV camera frame of the crop.
        K: (B, 3, 3) crop intrinsics; image_size: the crop's (H, W), where visibility is decided.
        to_photo: (B, 2, 3) affine map from crop pixels to ``photo`` pixels (None: ``photo`` is the crop).
        fragments: the crop's rasterization of this mesh (e.g. its render's), reused for the occlusion test;
            rasterized here when None.
    """
    baked = layout.bake_texels(torch.cat([vertices, normals], -1))  # (B, N, 6) at the covered texels only
    points, texel_normals = baked[..., :3], F.normalize(baked[..., 3:], dim=-1)
    pixels, _ = project_points(points, K)
    cosine = -(texel_normals * F.normalize(points, dim=-1)).sum(-1)

    if fragments is None:
        fragments = rasterize(vertices, layout.faces, K, RasterSettings(image_size=image_size))
    extent = (vertices.amax(1) - vertices.amin(1)).norm(dim=-1, keepdim=True)  # (B, 1)
    seen = visible_points(points, texel_normals, pixels, image_size, fragments, DEPTH_TOLERANCE * extent)
    seen &= cosine > MIN_COSINE
    visibility = torch.where(seen, ((cosine - MIN_COSINE) / (1 - MIN_COSINE)).clamp(0, 1), 0.0)

    if to_photo is not None:
        pixels = pixels @ to_photo[:, :, :2].transpose(1, 2) + to_photo[:, None, :, 2]
    colours = sample_image_at_points(photo, pixels.to(photo.dtype)) * seen.unsqueeze(-1)
    return PhotoTexture(layout.scatter(colours), layout.scatter(visibility.unsqueeze(-1)))


def fill_hidden(unwrapped: PhotoTexture, fallback: Tensor, symmetric: bool) -> Tensor:
    """A complete texture (B, 3, S, S): the photo where seen, blended by visibility with its mirror image
    (symmetric layouts) and then ``fallback`` (B, 3, S, S), e.g. the model's shaded albedo, where neither is."""
    own, seen = unwrapped.texture, unwrapped.visibility
    behind = fallback
    if symmetric:
        mirrored, mirrored_seen = own.flip(-1), seen.flip(-1)
        behind = mirrored_seen * mirrored + (1 - mirrored_seen) * fallback
    return seen * own + (1 - seen) * behind


def dilate(texture: Tensor, layout: UVLayout, steps: int = 4) -> Tensor:
    """Grow ``texture`` (B, C, S, S) ``steps`` texels beyond ``layout``'s mask, each new texel the average of its
    filled 3x3 neighbours (zero beyond), so bilinear lookups at UV seams do not blend in the empty background.
    Only the ring texels are computed (:meth:`UVLayout.dilation_plan`)."""
    batch, channels = texture.shape[:2]
    flat = (texture * layout.mask.to(texture.dtype)).reshape(batch, channels, -1)
    for ring, neighbours, weights in layout.dilation_plan(steps):
        flat[:, :, ring] = (flat[:, :, neighbours] * weights.to(flat.dtype)).sum(-1)  # in place: flat is new
    return flat.reshape(texture.shape)
