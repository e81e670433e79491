"""UV-space tools shared by prediction and the texture model: rasterizing a face model's UV layout, baking
per-vertex values into textures, unwrapping a photo into UV space with visibility, and symmetric filling."""

from facegen.texture.unwrap import PhotoTexture, unwrap_photo
from facegen.texture.uv import UVLayout

__all__ = ["PhotoTexture", "UVLayout", "unwrap_photo"]
