"""MoFA's analytic decoder: face code -> morphable model -> camera -> SH shading -> image and landmarks."""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from torch import Tensor, nn

from facegen.decoder.code import CodeLayout, FaceCode
from facegen.geometry.camera import MODEL_TO_OPENCV, intrinsics_from_fov, project_points, transform_points
from facegen.geometry.framing import DEFAULT_FILL, DEFAULT_FOV, frontal_translation
from facegen.geometry.normals import vertex_normals
from facegen.geometry.precision import float32, upcast
from facegen.geometry.rotations import euler_to_matrix
from facegen.geometry.sh import sh_shading
from facegen.morphable.model import MorphableModel
from facegen.render.renderer import Renderer, RenderOutput
from facegen.render.settings import RasterSettings


class DecodedFace(NamedTuple):
    """Camera-frame geometry of a batch of faces.

    vertices (B, V, 3) and normals (B, V, 3) in the OpenCV camera frame (model units); albedo (B, V, 3) in
    [0, 1] (unclamped); pixels (B, V, 2) projected vertices; landmarks (B, 68, 2) pixels; K (B, 3, 3).
    """

    vertices: Tensor
    normals: Tensor
    albedo: Tensor
    pixels: Tensor
    landmarks: Tensor
    K: Tensor


class FaceDecoder(nn.Module):
    """Decodes :class:`FaceCode` into geometry, per-vertex colour and rendered images.

    Args:
        model: the morphable model.
        image_size: (H, W) of the images the code explains.
        fov: horizontal field of view of the pinhole camera in degrees; fill: default framing
            (:mod:`facegen.geometry.framing`).
        albedo: a module mapping (B, k) albedo coefficients to (B, V, 3) colours; default: the model's own
            albedo basis (required when the model has none).
        raster: rasterization settings for :meth:`render` (image size taken from ``image_size``).
        shading: ``pixel`` or ``vertex`` SH evaluation in :meth:`render` (see :class:`Renderer`).
    """

    def __init__(
        self,
        model: MorphableModel,
        image_size: tuple[int, int] = (224, 224),
        fov: float = DEFAULT_FOV,
        fill: float = DEFAULT_FILL,
        albedo: nn.Module | None = None,
        raster: RasterSettings | None = None,
        shading: str = "pixel",
    ) -> None:
        super().__init__()
        if albedo is None and not model.has_albedo:
            raise ValueError(
                f"face model {model.name!r} has no albedo basis: give the decoder a learned albedo module"
            )
        self.model = model
        self.albedo = albedo
        self.image_size = tuple(image_size)
        self.fov = fov
        landmarks = model.mean[model.landmark_indices].double()
        base = frontal_translation(landmarks, self.image_size, fov, fill).float()
        self.register_buffer("base_translation", base, persistent=False)
        self.register_buffer("translation_unit", base[2:3].abs() / 10, persistent=False)
        self.register_buffer("intrinsics", intrinsics_from_fov(fov, self.image_size)[0], persistent=False)
        self.register_buffer("model_to_camera", MODEL_TO_OPENCV.clone(), persistent=False)
        settings = replace(raster or RasterSettings(), image_size=self.image_size)
        self.renderer = Renderer(settings, shading=shading)

    def layout(self, **sizes) -> CodeLayout:
        """The code layout for this decoder's model (MoFA's sizes, capped by the model)."""
        albedo_rank = getattr(self.albedo, "rank", None)
        return CodeLayout.for_model(self.model, albedo_rank=albedo_rank, **sizes)

    def camera_pose(self, code: FaceCode) -> tuple[Tensor, Tensor]:
        """Rotation (B, 3, 3) model -> camera and translation (B, 3) in model units."""
        rotation = euler_to_matrix(code.rotation) @ self.model_to_camera
        translation = self.base_translation + code.translation * self.translation_unit
        return rotation, translation

    def colours(self, code: FaceCode) -> Tensor:
        """(B, V, 3) per-vertex albedo."""
        if self.albedo is not None:
            return self.albedo(code.albedo)
        return self.model(albedo=code.albedo).albedo.expand(code.batch_size, -1, -1)

    def forward(self, code: FaceCode) -> DecodedFace:
        """Camera-frame geometry of ``code``, in float32 even inside autocast (:mod:`facegen.geometry.precision`)."""
        with float32(code.rotation.device):
            return self._decode(code.upcast())

    def _decode(self, code: FaceCode) -> DecodedFace:
        geometry = self.model(shape=code.shape, expression=code.expression)
        rotation, translation = self.camera_pose(code)
        vertices = transform_points(geometry.vertices.expand(code.batch_size, -1, -1), rotation, translation)
        K = self.intrinsics.expand(code.batch_size, 3, 3)
        pixels, _ = project_points(vertices, K)
        normals = vertex_normals(vertices, self.model.faces)
        landmarks = pixels[:, self.model.landmark_indices]
        return DecodedFace(vertices, normals, self.colours(code), pixels, landmarks, K)

    def vertex_colours(self, decoded: DecodedFace, light: Tensor) -> Tensor:
        """(B, V, 3) shaded vertex colours: albedo times SH irradiance (float32 even inside autocast)."""
        with float32(light.device):
            return decoded.albedo * sh_shading(decoded.normals, upcast(light))

    def render(
        self, decoded: DecodedFace, light: Tensor | None, background: Tensor | float | None = None
    ) -> RenderOutput:
        """Rasterized image (B, 3, H, W) of the decoded faces, shaded per pixel by ``light`` (B, 27)."""
        light = None if light is None else upcast(light)
        return self.renderer(
            decoded.vertices,
            self.model.faces,
            decoded.K,
            colours=decoded.albedo,
            sh_coeffs=light,
            background=background,
        )
