"""Unwrapping a photo into a face model's UV layout through fitted geometry: each texel's surface point is
projected into the photo, tested for visibility, and sampled; hidden texels are filled from the mirrored side
when the layout is symmetric, else from a fallback texture."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from facegen.render.points import sample_image_at_points, unoccluded
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
    # channel-major (B, N) components: elementwise products of contiguous rows, not strided (B, N, 3) sums
    px, py, pz, nx, ny, nz = baked.transpose(1, 2).contiguous().unbind(1)
    k = K.expand(len(baked), 3, 3)[..., None]  # (B, 3, 3, 1): each entry broadcasts over the texels
    inverse_depth = torch.where(pz.abs() < 1e-8, 1e-8, pz).reciprocal()  # z near 0: hidden anyway
    x = (k[:, 0, 0] * px + k[:, 0, 1] * py) * inverse_depth + k[:, 0, 2]
    y = (k[:, 1, 0] * px + k[:, 1, 1] * py) * inverse_depth + k[:, 1, 2]
    # cosine between the normal and the ray to the camera
    dot = torch.addcmul(torch.addcmul(nx * px, ny, py), nz, pz)
    lengths = torch.addcmul(torch.addcmul(nx * nx, ny, ny), nz, nz)
    lengths *= torch.addcmul(torch.addcmul(px * px, py, py), pz, pz)
    cosine = -dot * lengths.clamp_min_(1e-24).rsqrt_()

    if fragments is None:
        fragments = rasterize(vertices, layout.faces, K, RasterSettings(image_size=image_size))
    extent = (vertices.amax(1) - vertices.amin(1)).norm(dim=-1, keepdim=True)  # (B, 1)
    seen = unoccluded(cosine > MIN_COSINE, x, y, pz, image_size, fragments, DEPTH_TOLERANCE * extent)
    visibility = torch.where(seen, ((cosine - MIN_COSINE) / (1 - MIN_COSINE)).clamp_(0, 1), 0.0)

    if to_photo is not None:
        # crop -> photo pixels on the (B, N) rows (a batched matmul with two columns is slower)
        m = to_photo[..., None]  # (B, 2, 3, 1)
        x, y = (
            torch.addcmul(torch.addcmul(m[:, 0, 2], m[:, 0, 0], x), m[:, 0, 1], y),
            torch.addcmul(torch.addcmul(m[:, 1, 2], m[:, 1, 0], x), m[:, 1, 1], y),
        )
    pixels = torch.stack([x, y], -1)
    colours = sample_image_at_points(photo, pixels.to(photo.dtype)) * seen.unsqueeze(-1)
    texture, visible = layout.scatter(torch.cat([colours, visibility.unsqueeze(-1)], -1)).split((3, 1), 1)
    return PhotoTexture(texture, visible)


def fill_hidden(unwrapped: PhotoTexture, fallback: Tensor, symmetric: bool) -> Tensor:
    """A complete texture (B, 3, S, S): the photo where seen, blended by visibility with its mirror image
    (symmetric layouts) and then ``fallback`` (B, 3, S, S), e.g. the model's shaded albedo, where neither is."""
    own, seen = unwrapped.texture, unwrapped.visibility
    behind = torch.lerp(fallback, own.flip(-1), seen.flip(-1)) if symmetric else fallback
    return torch.lerp(behind, own, seen)


def dilate(texture: Tensor, layout: UVLayout, steps: int = 4) -> Tensor:
    """Grow ``texture`` (B, C, S, S) ``steps`` texels beyond ``layout``'s mask, each new texel the average of its
    filled 3x3 neighbours (zero beyond), so bilinear lookups at UV seams do not blend in the empty background.
    Only the ring texels are computed (:meth:`UVLayout.dilation_plan`)."""
    batch, channels = texture.shape[:2]
    flat = (texture * layout.mask.to(texture.dtype)).reshape(batch, channels, -1)
    for ring, neighbours, weights in layout.dilation_plan(steps):
        flat[:, :, ring] = (flat[:, :, neighbours] * weights.to(flat.dtype)).sum(-1)  # in place: flat is new
    return flat.reshape(texture.shape)
