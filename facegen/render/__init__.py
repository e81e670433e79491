"""One renderer for MoFA and the texture model: pure-PyTorch rasterizer (default) or PyTorch3D, same contract."""

from facegen.render.points import sample_image_at_points, visible_points
from facegen.render.rasterize import rasterize, resolve_backend
from facegen.render.renderer import Renderer, RenderOutput
from facegen.render.settings import Fragments, RasterSettings
from facegen.render.shading import (
    composite,
    depth_image,
    interpolate_face_corners,
    interpolate_vertex_attributes,
    normal_image,
    sample_uv_texture,
    shade_sh,
)

__all__ = [
    "Fragments",
    "RasterSettings",
    "RenderOutput",
    "Renderer",
    "composite",
    "depth_image",
    "interpolate_face_corners",
    "interpolate_vertex_attributes",
    "normal_image",
    "rasterize",
    "resolve_backend",
    "sample_image_at_points",
    "sample_uv_texture",
    "shade_sh",
    "visible_points",
]
