"""``Renderer``: rasterize, shade (per-vertex colours or a UV texture, SH lighting) and composite."""

from __future__ import annotations

from typing import Literal, NamedTuple

from torch import Tensor, nn

from facegen.errors import check_choice
from facegen.geometry.normals import vertex_normals
from facegen.geometry.precision import float32, upcast
from facegen.render.rasterize import rasterize
from facegen.render.settings import Fragments, RasterSettings
from facegen.render.shading import (
    composite,
    interpolate_vertex_attributes,
    sample_uv_texture,
    shade_pixels,
    shade_sh,
)

#: Where SH shading is evaluated (see :class:`Renderer`).
Shading = Literal["pixel", "vertex"]


class RenderOutput(NamedTuple):
    """image: (B, 3, H, W); mask: (B, 1, H, W) float; fragments of the rasterization."""

    image: Tensor
    mask: Tensor
    fragments: Fragments


class Renderer(nn.Module):
    """Renders meshes given in the OpenCV camera frame with intrinsics K.

    Args:
        settings: rasterization settings (image size, backend, culling, ...).
        shading: ``pixel`` (normals and albedo interpolated, SH evaluated per pixel) or ``vertex`` (Gouraud:
            SH evaluated per vertex, colours interpolated).
    """

    def __init__(self, settings: RasterSettings | None = None, shading: Shading = "pixel") -> None:
        super().__init__()
        check_choice("renderer shading", shading, Shading)
        self.settings = settings or RasterSettings()
        self.shading = shading

    def rasterize(self, vertices: Tensor, faces: Tensor, K: Tensor) -> Fragments:
        with float32(vertices.device):
            return rasterize(upcast(vertices), faces, upcast(K), self.settings)

    def forward(
        self,
        vertices: Tensor,
        faces: Tensor,
        K: Tensor,
        colours: Tensor | None = None,
        texture: Tensor | None = None,
        uv_coords: Tensor | None = None,
        uv_faces: Tensor | None = None,
        sh_coeffs: Tensor | None = None,
        background: Tensor | float | None = None,
    ) -> RenderOutput:
        """Render a batch.

        Args:
            vertices: (B, V, 3) camera frame. faces: (F, 3). K: (B, 3, 3).
            colours: (B, V, 3) per-vertex albedo/colour, or ``texture`` (B, 3, Ht, Wt) with ``uv_coords`` (T, 2)
                and ``uv_faces`` (F, 3).
            sh_coeffs: (B, 27) SH lighting; None renders the unlit colour.
            background: see :func:`facegen.render.shading.composite`.
        """
        if (colours is None) == (texture is None):
            raise ValueError("give exactly one of colours (B, V, 3) or texture (B, 3, Ht, Wt)")
        with float32(vertices.device):
            return self._render(
                upcast(vertices),
                faces,
                upcast(K),
                colours,
                texture,
                uv_coords,
                uv_faces,
                sh_coeffs,
                background,
            )

    def _render(self, vertices, faces, K, colours, texture, uv_coords, uv_faces, sh_coeffs, background):
        """:meth:`forward`'s work, inside its float32 context."""
        colours, texture, sh_coeffs = (
            None if t is None else upcast(t) for t in (colours, texture, sh_coeffs)
        )
        fragments = self.rasterize(vertices, faces, K)
        normals = vertex_normals(vertices, faces) if sh_coeffs is not None else None
        if texture is not None:
            if uv_coords is None or uv_faces is None:
                raise ValueError("a UV texture needs uv_coords (T, 2) and uv_faces (F, 3)")
            albedo = sample_uv_texture(fragments, uv_coords, uv_faces, texture)
            colour = (
                albedo
                if normals is None
                else shade_sh(albedo, interpolate_vertex_attributes(fragments, faces, normals), sh_coeffs)
            )
        elif normals is None:
            colour = interpolate_vertex_attributes(fragments, faces, colours)
        elif self.shading == "vertex":
            colour = interpolate_vertex_attributes(fragments, faces, shade_sh(colours, normals, sh_coeffs))
        else:
            colour = shade_pixels(fragments, faces, colours, normals, sh_coeffs)
        mask = fragments.mask
        return RenderOutput(
            composite(colour, mask, background), mask.unsqueeze(1).to(vertices.dtype), fragments
        )
