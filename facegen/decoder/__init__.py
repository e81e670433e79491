"""The semantic face code and MoFA's analytic decoder (face model + camera + SH shading + renderer)."""

from facegen.decoder.code import PARTS, CodeLayout, FaceCode
from facegen.decoder.decoder import DecodedFace, FaceDecoder

__all__ = ["PARTS", "CodeLayout", "DecodedFace", "FaceCode", "FaceDecoder"]
