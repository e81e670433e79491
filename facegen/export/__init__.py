"""Writing reconstructions: Wavefront ``.obj``/``.mtl`` meshes (vertex colours or a UV texture), PNG images and
coefficient files, each written atomically (:mod:`facegen.atomic`)."""

from facegen.export.files import write_png_atomic
from facegen.export.obj import obj_text, read_obj, write_textured_obj, write_vertex_colour_obj

__all__ = [
    "obj_text",
    "read_obj",
    "write_png_atomic",
    "write_textured_obj",
    "write_vertex_colour_obj",
]
