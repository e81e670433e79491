"""What the tasks predict, one type per kind of output. Tasks produce them in ``predict_step``; prediction writers
and picture loggers consume only these and what they are given at construction (the face model, the UV
layout), never a task's internals.

Frames and units: camera-frame quantities are in the OpenCV camera of the S x S crop (x right, y down, z forward,
model units); model-space vertices carry no pose; pixels count from the centre of the top-left pixel; colours
and images are float in [0, 1] (unclamped where noted).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from facegen.data.batch import FaceBatch
from facegen.decoder import DecodedFace, FaceCode
from facegen.render.renderer import RenderOutput


class Reconstruction(NamedTuple):
    """A face model's explanation of a :class:`FaceBatch` of B crops (MoFA's ``predict_step``).

    Attributes:
        batch: the crops it explains, with their detected landmarks, keys and metadata.
        code: the (refined) face code.
        decoded: camera-frame vertices and normals (B, V, 3), per-vertex albedo (B, V, 3, unclamped),
            projected vertices and landmarks (pixels; the model's 68 vertices: the 3D convention of
            AFLW2000-3D, occluded points where they are), intrinsics K (B, 3, 3).
        landmarks_2d: (B, 68, 2) pixels, the 68 points in the 2D convention of 300-W (the jaw of a turned face
            on its visible outline).
        vertices_model: (B, V, 3) shape and expression in model space, before the pose.
        camera_rotation: (B, 3, 3) and camera_translation: (B, 3), model space -> camera frame.
        shaded: (B, V, 3) albedo times SH irradiance (unclamped).
        render: the faces rendered on black: image (B, 3, S, S) and coverage mask (B, 1, S, S); None when no
            output needs it (coefficients only).
        fit_loss: the fitting objective (mean over the batch) before each refinement step; empty without one.
        face_loss: (B, 2) each face's own fitting objective before and after the refinement; None without one.
        fit_diverged: (B,) bool, faces whose fit diverged (their code is the encoder's); None without a fit.
        fit_implausible: per face, why its fit is implausible (not to be written as a result), or None; None
            without a fit.
        geometry: (B, 3, S, S) the shape shaded grey under a frontal light, for pictures; None unless asked.
    """

    batch: FaceBatch
    code: FaceCode
    decoded: DecodedFace
    landmarks_2d: Tensor
    vertices_model: Tensor
    camera_rotation: Tensor
    camera_translation: Tensor
    shaded: Tensor
    render: RenderOutput | None
    fit_loss: list[float]
    face_loss: Tensor | None = None
    fit_diverged: Tensor | None = None
    fit_implausible: list[str | None] | None = None
    geometry: Tensor | None = None


class GeneratedImages(NamedTuple):
    """Images of a 2D generator for B seeds (:class:`~facegen.tasks.ImageGAN`'s ``predict_step``).

    Attributes:
        seeds: the B seeds (z is drawn from N(0, I) by a generator seeded with each).
        image: (B, C, R, R) images in [0, 1].
        truncation: the truncation psi they were generated with.
    """

    seeds: list[int]
    image: Tensor
    truncation: float


class GeneratedTextures(NamedTuple):
    """UV textures generated for B seeds (the texture model's ``predict_step`` on a seed batch).

    Attributes:
        seeds: the B seeds.
        texture: (B, 3, R, R) UV textures in [0, 1].
        vertices_model: (B, V, 3) the geometry each texture is shown on (the mean shape), model space.
        views: (B, 3, S, S * n) the textured geometry from n yaw angles, side by side.
        truncation: the truncation psi they were generated with.
    """

    seeds: list[int]
    texture: Tensor
    vertices_model: Tensor
    views: Tensor
    truncation: float


class ReconstructedTextures(NamedTuple):
    """UV textures fitted to a :class:`FaceBatch` of B photos by latent optimisation.

    Attributes:
        batch: the crops they reconstruct.
        texture: (B, 3, R, R) UV textures in [0, 1].
        vertices_model: (B, V, 3) the fitted geometry (model space) carrying them.
        render: (B, 3, S, S) the textured fit rendered into the crop.
        views: (B, 3, S, S * n) the textured geometry from n novel yaw angles, side by side.
        fit_loss: the fitting objective (mean over the batch) at each latent-optimisation step.
        metrics: {``psnr`` (dB), ``ssim``, ``l1``, and ``lpips`` when the latent fit has LPIPS: (B,)} of the render
            against the crop on visible face pixels.
    """

    batch: FaceBatch
    texture: Tensor
    vertices_model: Tensor
    render: Tensor
    views: Tensor
    fit_loss: list[float]
    metrics: dict[str, Tensor]
