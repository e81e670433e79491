"""The frozen MoFA that gives the texture model its geometry, pose and light: loading it from a checkpoint
(:class:`MoFASource`), what it says of a batch (:class:`Condition`), and UV textures rendered on that geometry."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from facegen.data.batch import FaceBatch
from facegen.decoder import DecodedFace, FaceCode, FaceDecoder
from facegen.errors import ConfigError
from facegen.fitting import FitSchedule, FitTargets, PhotometricStage, fit
from facegen.geometry.camera import intrinsics_from_fov, transform_points
from facegen.geometry.sh import ambient_sh
from facegen.morphable.registry import load_face_model
from facegen.render.renderer import Renderer
from facegen.tasks.mofa import MoFA

#: Yaw angles (radians) of the novel views of a textured face.
VIEWS = (-0.6, 0.0, 0.6)


@dataclass
class MoFASource:
    """The frozen MoFA's checkpoint: a trained ``facegen fit --config configs/mofa.yaml`` run's ``last.ckpt``."""

    checkpoint: str = "runs/mofa/checkpoints/last.ckpt"


class Condition(NamedTuple):
    """What the frozen MoFA says of a batch of photos: image (B, 3, S, S) in [0, 1], face mask (B, 1, S, S), code,
    decoded geometry (camera frame); for a 2D generator's images the images at its own resolution (B, 3, R, R),
    else None, and, when each face was fitted in a crop of its image (two-step geometry), the intrinsics
    (B, 3, 3) that draw it into that image (else the image is the crop, resized) and where a face was detected
    (B,) bool."""

    image: Tensor
    mask: Tensor
    code: FaceCode
    decoded: DecodedFace
    native: Tensor | None = None
    native_K: Tensor | None = None
    detected: Tensor | None = None


def load_mofa(source: MoFASource, face_model: str | None) -> MoFA:
    """The MoFA of ``source``, checked against ``face_model`` (when given) and for a UV layout. A missing
    checkpoint is a one-line error naming the command that makes it; nothing is trained here."""
    path = Path(source.checkpoint)
    if not path.is_file():
        raise ConfigError(
            f"model.mofa.checkpoint {path} does not exist: train MoFA first (make demo, or facegen fit --config "
            "configs/mofa.yaml, which writes runs/mofa/checkpoints/last.ckpt) or point to another MoFA checkpoint"
        )
    # In an empty context: while LightningCLI instantiates the texture model it hands that model's init args to
    # every save_hyperparameters() call (through a context variable), which would overwrite MoFA's own.
    mofa = contextvars.Context().run(MoFA.load_from_checkpoint, str(path), map_location="cpu")
    model = mofa.decoder.model
    if not model.has_uv:
        raise ConfigError(
            f"{path}: face model {model.name!r} has no UV layout, which the texture model needs"
        )
    if face_model is not None:
        expected = load_face_model(face_model)
        same = (
            expected.num_vertices == model.num_vertices
            and torch.equal(expected.faces, model.faces)
            and expected.has_uv
            and torch.equal(expected.uv_faces, model.uv_faces)
        )
        if not same:
            raise ConfigError(
                f"model.face_model {face_model!r} ({expected.num_vertices} vertices) does not match the face model "
                f"of MoFA checkpoint {path} ({model.name!r}, {model.num_vertices} vertices) or its UV layout"
            )
    return mofa


@torch.no_grad()
def condition_of(mofa: MoFA, batch: FaceBatch) -> Condition:
    """The frozen ``mofa``'s code and geometry for ``batch``."""
    code = mofa(batch.image)
    return Condition(batch.image, batch.mask, code, mofa.decoder(code))


def fit_unlabelled(mofa: MoFA, image: Tensor, code: FaceCode, stage: PhotometricStage) -> FaceCode:
    """``code`` of ``image`` (B, 3, S, S) in [0, 1], e.g. a 2D generator's faces, fitted by ``stage`` (Adam on
    MoFA's objective, its weights or else ``mofa``'s fitting weights) over the whole image with the landmark
    term off: such images come without landmarks, so the photometric term and the priors decide."""
    weights = replace(mofa.fit_problem(FitSchedule(photometric=stage)).weights, landmark=0.0)
    schedule = FitSchedule(photometric=replace(stage, weights=weights))
    count, points = image.shape[0], len(mofa.decoder.model.landmark_indices)
    targets = FitTargets(
        image,
        image.new_ones(count, 1, *image.shape[-2:]),
        image.new_full((count, points, 2), float("nan")),  # none: the landmark term is off
        image.new_zeros(count, points),
    )
    return fit(mofa.fit_problem(schedule), targets, code, schedule).code


def render_texture(
    decoder: FaceDecoder, texture: Tensor, condition: Condition, native: Renderer | None = None
) -> Tensor:
    """UV ``texture`` (B, 3, T, T) in [0, 1] shaded on the fitted faces, composited into the photos: (B, 3, S, S);
    with ``native`` (a renderer at the 2D images' own resolution R), into ``condition.native``: (B, 3, R, R),
    the same camera's field of view at that size."""
    decoded, model = condition.decoded, decoder.model
    renderer, K, background = decoder.renderer, decoded.K, condition.image
    if native is not None:
        renderer, background, K = native, condition.native, condition.native_K
        if K is None:
            K = (
                intrinsics_from_fov(decoder.fov, native.settings.image_size)
                .to(decoded.K)
                .expand_as(decoded.K)
            )
    return renderer(
        decoded.vertices,
        model.faces,
        K,
        texture=texture,
        uv_coords=model.uv_coords,
        uv_faces=model.uv_faces,
        sh_coeffs=condition.code.light,
        background=background,
    ).image


def visible_face_pixels(decoder: FaceDecoder, condition: Condition) -> Tensor:
    """(B, 1, S, S) float: pixels covered by the fitted mesh and inside the photo's face mask."""
    covered = decoder.renderer.rasterize(
        condition.decoded.vertices, decoder.model.faces, condition.decoded.K
    ).mask
    return covered.unsqueeze(1).to(condition.image.dtype) * (condition.mask > 0.5)


@torch.no_grad()
def novel_views(
    decoder: FaceDecoder, vertices: Tensor, texture: Tensor, yaws: tuple[float, ...] = VIEWS
) -> Tensor:
    """Model-space ``vertices`` (B, V, 3) with UV ``texture`` (B, 3, R, R) rendered in the default framing at each
    yaw, under soft frontal light, side by side: (B, 3, S, S * len(yaws))."""
    batch, count = vertices.shape[0], len(yaws)
    code = decoder.layout().zeros(count)._replace(rotation=torch.tensor([[0.0, yaw, 0.0] for yaw in yaws]))
    rotation, translation = decoder.camera_pose(FaceCode(*(part.to(vertices.device) for part in code)))
    camera = transform_points(
        vertices.repeat_interleave(count, 0), rotation.repeat(batch, 1, 1), translation.repeat(batch, 1)
    )
    light = ambient_sh(batch * count, 0.9, vertices.device)
    light.view(batch * count, 3, 9)[:, :, 2] = -0.3  # from the camera's side
    model = decoder.model
    image = decoder.renderer(
        camera,
        model.faces,
        decoder.intrinsics.expand(batch * count, 3, 3),
        texture=texture.repeat_interleave(count, 0),
        uv_coords=model.uv_coords,
        uv_faces=model.uv_faces,
        sh_coeffs=light,
        background=1.0,
    ).image
    size = image.shape[-1]
    return (
        image.reshape(batch, count, 3, size, size)
        .permute(0, 2, 3, 1, 4)
        .reshape(batch, 3, size, count * size)
    )
