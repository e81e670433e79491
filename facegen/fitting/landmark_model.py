"""The landmark vertices of a face model with its camera (:class:`LandmarkModel`): their geometry per face, the
silhouette points a turned face's jaw slides to, and the 68 points in the 2D convention.

The jaw contour (landmarks 0-16) of a 2D annotation follows the face's silhouette, not fixed vertices. With
sliding correspondences each cheek landmark (0-5 and 11-16) of the side turned away moves onto the model's
outline in the current pose (:meth:`LandmarkModel.silhouette`). The outline of a side is traced in thin
horizontal slices of the model (:data:`OUTLINE_SLICES` per spacing of the jaw landmarks, on that side, in the face
region): the vertex of each slice that lies furthest out in the image. Given the detected points, each landmark
takes the outline vertex nearest to its detected point (a 2D annotation spaces its jaw points along the visible
outline, not at the model's heights); without them (or where one is missing), the outline vertex at the height
of its own jaw vertex.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from facegen.decoder import FaceCode, FaceDecoder
from facegen.fitting.pose import Pose
from facegen.geometry.camera import MODEL_TO_OPENCV
from facegen.geometry.rotations import euler_to_matrix, matrix_to_euler

#: The cheek landmarks that slide (the chin, 6-10, stays on its vertices).
SLIDING = (0, 1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 16)
#: Yaw (degrees) beyond which the side turned away shows a silhouette instead of its jaw line.
TURNED_AWAY = 10.0
#: Slices of the outline per vertical spacing of neighbouring jaw landmarks.
OUTLINE_SLICES = 4


class Outline(NamedTuple):
    """Slices of the model whose outermost vertices trace a side's outline: ``candidates`` (S, C) vertex
    indices (-1 pads), ``side`` (S,) +1 for the model's +x side, -1 for the other, and ``own`` (12,) the slice of
    each sliding landmark's own jaw vertex height (:data:`SLIDING` order)."""

    candidates: Tensor
    side: Tensor
    own: Tensor


class LandmarkBases(NamedTuple):
    """Per-face landmark geometry in the model frame: mean (B, 68, 3), shape (B, Ks, 68, 3) and expression
    (B, Ke, 68, 3) bases scaled by their standard deviations (coefficients in standard deviations). A leading
    size of 1 instead of B: every face shares them (fixed landmark vertices), broadcast in every product, which
    makes the Jacobian's basis products about four times faster than with B copies."""

    mean: Tensor
    shape: Tensor
    expression: Tensor


class LandmarkModel:
    """The landmark vertices of ``decoder``'s face model with its camera, for codes of ``shape``/``expression``
    coefficients."""

    def __init__(self, decoder: FaceDecoder, n_shape: int, n_expression: int) -> None:
        self.decoder, self.face_model = decoder, decoder.model
        self.n_shape, self.n_expression = n_shape, n_expression
        self.landmark_indices = self.face_model.landmark_indices
        self.K = decoder.intrinsics
        self.base = decoder.base_translation
        self.unit = decoder.translation_unit
        self.flip = MODEL_TO_OPENCV.to(self.K)

    def parameter_bounds(self, n_free_shape: int) -> tuple[Tensor, Tensor] | None:
        """Limits of a landmark problem's parameters (pose 6, ``n_free_shape`` shape, the expressions): the
        expressions' bounds of a blendshape model, the rest free; None for a model without bounds."""
        bounds = self.face_model.expression_bounds
        if bounds is None:
            return None
        free = self.K.new_full((6 + n_free_shape,), math.inf)
        low, high = (bound[: self.n_expression].to(free) for bound in bounds)
        return torch.cat([-free, low]), torch.cat([free, high])

    def silhouette_landmarks(self, code: FaceCode, pixels: Tensor, detected: Tensor | None = None) -> Tensor:
        """(B, 68, 2) the 68 points in the 2D convention (the jaw of a turned face on its visible outline, as
        300-W annotates it), taken from the projected vertices ``pixels`` (B, V, 2) of ``code``'s face; with the
        ``detected`` points (B, 68, 2) the jaw points sit on the outline where they were detected."""
        indices = self.silhouette(code, detected)
        return torch.gather(pixels, 1, indices[..., None].expand(-1, -1, 2))

    def vertex_bases(self, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean (*I, 3), shape (Ks, *I, 3) and expression (Ke, *I, 3) bases, scaled by their standard
        deviations, of the vertices ``indices`` (any shape *I); only those vertices are gathered."""
        model, ks, ke = self.face_model, self.n_shape, self.n_expression
        extra = (None,) * (indices.dim() + 1)
        return (
            model.mean[indices],
            model.shape_basis[:ks, indices] * model.shape_std[(slice(0, ks), *extra)],
            model.expression_basis[:ke, indices] * model.expression_std[(slice(0, ke), *extra)],
        )

    def bases(self, indices: Tensor) -> LandmarkBases:
        """The geometry of vertices ``indices`` (B, 68), or (1, 68) for vertices every face shares."""
        mean, shape, expression = self.vertex_bases(indices)
        return LandmarkBases(mean, shape.permute(1, 0, 2, 3), expression.permute(1, 0, 2, 3))

    def with_dense(self, bases: LandmarkBases) -> LandmarkBases:
        """``bases`` (B, J points) followed by the face model's N dense landmarks (barycentric combinations of
        their triangles' corners): (B, J + N) points."""
        model = self.face_model
        corners = model.faces[model.dense_triangles]  # (N, 3)
        weights = model.dense_barycentrics.to(bases.mean)[..., None]  # (N, 3, 1)
        mean, shape, expression = (
            (part * weights).sum(-2) for part in self.vertex_bases(corners)
        )  # (N, 3), (Ks, N, 3), (Ke, N, 3)
        batch = bases.mean.shape[0]
        return LandmarkBases(
            torch.cat([bases.mean, mean.expand(batch, -1, -1)], 1),
            torch.cat([bases.shape, shape.expand(batch, -1, -1, -1)], 2),
            torch.cat([bases.expression, expression.expand(batch, -1, -1, -1)], 2),
        )

    @functools.cached_property
    def outline(self) -> Outline | None:
        """The outline slices (:func:`outline_slices`), built when first needed."""
        return outline_slices(self.face_model) if len(self.landmark_indices) == 68 else None

    def fixed_indices(self, batch: int) -> Tensor:
        return self.landmark_indices.expand(batch, -1)

    def points(self, bases: LandmarkBases, shape: Tensor, expression: Tensor) -> Tensor:
        """(B, 68, 3) model-frame landmark positions of the coefficients (B, Ks), (B, Ke)."""
        return (
            bases.mean
            + torch.einsum("bk,bkjc->bjc", shape, bases.shape)
            + torch.einsum("bk,bkjc->bjc", expression, bases.expression)
        )

    def pose_of(self, code: FaceCode) -> Pose:
        """The code's rigid model -> camera transform (the decoder's)."""
        return Pose(*self.decoder.camera_pose(code))

    def code_pose(self, pose: Pose) -> tuple[Tensor, Tensor]:
        """(rotation, translation) code parts of a rigid transform (inverse of :meth:`pose_of`)."""
        return matrix_to_euler(pose.rotation @ self.flip), (pose.translation - self.base) / self.unit

    def camera(self, rotation: Tensor, translation: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """The model -> camera rotation (..., 3, 3) of code pose parts (..., 3), (..., 3) and the model points
        (..., N, 3) in the camera frame."""
        matrix = euler_to_matrix(rotation) @ self.flip
        camera = points @ matrix.transpose(-1, -2) + (self.base + translation * self.unit).unsqueeze(-2)
        return matrix, camera

    def pixels(self, camera: Tensor) -> Tensor:
        """Pixels (..., N, 2) of camera-frame points (..., N, 3)."""
        return camera[..., :2] / camera[..., 2:3] * self.K.diagonal()[:2] + self.K[:2, 2]

    def project(self, rotation: Tensor, translation: Tensor, points: Tensor) -> Tensor:
        """Pixels (..., N, 2) of model points (..., N, 3) under code pose parts (..., 3), (..., 3)."""
        return self.pixels(self.camera(rotation, translation, points)[1])

    def silhouette(self, code: FaceCode, detected: Tensor | None = None) -> Tensor:
        """(B, 68) landmark vertices with the cheek landmarks of the side turned away from the camera (by more
        than :data:`TURNED_AWAY`) slid onto that side's outline in the current pose: to the outline vertex nearest
        their ``detected`` point (B, 68, 2) where it is given and finite, else to the outline at their own
        height; the side facing the camera shows its jaw line, where the fixed vertices lie."""
        indices = self.fixed_indices(code.batch_size).clone()
        if self.outline is None:
            return indices
        candidates, side, own = self.outline
        sliding_side = side[own]  # (12,)
        valid = candidates >= 0
        safe = candidates.clamp(min=0)
        with torch.no_grad():
            mean, shape, expression = self.vertex_bases(safe)
            geometry = (
                mean
                + torch.einsum("bk,kjcd->bjcd", code.shape, shape)
                + torch.einsum("bk,kjcd->bjcd", code.expression, expression)
            )  # (B, S, C, 3)
            pixels = self.project(code.rotation[:, None], code.translation[:, None], geometry)
            # the model's +x axis in the camera frame (the first column of the rotation): its image direction
            # is "outward" for the +x side, its depth tells which side is turned away (OpenCV z: away)
            axis = self.pose_of(code).rotation[:, :, 0]  # (B, 3)
            sideways = torch.nn.functional.normalize(axis[:, :2], dim=-1)  # (B, 2)
            outward = (pixels * sideways[:, None, None]).sum(-1) * side[:, None]  # (B, S, C)
            best = outward.masked_fill(~valid, float("-inf")).argmax(-1)  # (B, S)
            vertex = torch.gather(safe.expand(code.batch_size, -1, -1), 2, best[..., None])[..., 0]  # (B, S)
            chosen = vertex[:, own]  # (B, 12): the outline at each landmark's own height
            if detected is not None:
                # the outline's pixels (B, S, 2), each landmark's distance to them (B, 12, S), slices it cannot
                # take (12, S): the other side's and empty ones
                point = torch.gather(pixels, 2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
                goal = detected[:, list(SLIDING)].to(point)
                distance = (point[:, None] - goal[:, :, None]).norm(dim=-1)
                elsewhere = (sliding_side[:, None] != side[None, :]) | ~valid.any(-1)
                nearest = distance.masked_fill(elsewhere, float("inf")).nan_to_num(float("inf")).argmin(-1)
                found = goal.isfinite().all(-1)
                chosen = torch.where(found, torch.gather(vertex, 1, nearest), chosen)
            away = axis[:, 2:3] * sliding_side > math.sin(math.radians(TURNED_AWAY))  # (B, 12)
        sliding = list(SLIDING)
        indices[:, sliding] = torch.where(away, chosen, indices[:, sliding])
        return indices


def outline_slices(model) -> Outline | None:
    """The :class:`Outline` of ``model``: on each side, slices :data:`OUTLINE_SLICES` times thinner than the
    spacing of neighbouring jaw landmarks, from half a spacing below that side's lowest sliding landmark to half
    a spacing above its highest, each holding the vertices of that height on that side, in the face region when
    the model has one, and not behind the jaw landmark nearest in height (a side turned away shows the cheek in
    front of its jaw line). None when a slice at a landmark's height is empty."""
    mean = model.mean
    jaw = mean[model.landmark_indices[:17]]
    region = (
        model.mask("face") if "face" in model.mask_names else torch.ones_like(mean[:, 0], dtype=torch.bool)
    )
    spacing = (jaw[1:, 1] - jaw[:-1, 1]).abs().mean()
    thickness = spacing / OUTLINE_SLICES
    middle = jaw[8, 0]
    slices, sides, own = [], [], {}
    for side in (1.0, -1.0):
        landmarks = [j for j in SLIDING if (1.0 if jaw[j, 0] > middle else -1.0) == side]
        if not landmarks:
            continue
        heights = jaw[landmarks, 1]
        low = float(heights.min() - spacing / 2)
        count = int(torch.ceil((heights.max() + spacing / 2 - low) / thickness))
        first = len(slices)
        for n in range(count):
            y = low + (n + 0.5) * float(thickness)
            nearest = landmarks[int((heights - y).abs().argmin())]
            members = torch.nonzero(
                region
                & ((mean[:, 1] - y).abs() <= thickness / 2)
                & ((mean[:, 0] - middle) * side > 0)
                & (mean[:, 2] >= jaw[nearest, 2])
            )[:, 0]
            slices.append(members)
            sides.append(side)
        for j in landmarks:
            own[j] = first + min(int((jaw[j, 1] - low) / thickness), count - 1)
    if any(slices[own[j]].numel() == 0 for j in SLIDING):
        return None
    width = max(len(members) for members in slices)
    padded = torch.full((len(slices), width), -1, dtype=torch.long, device=mean.device)
    for row, members in enumerate(slices):
        padded[row, : len(members)] = members
    return Outline(
        padded,
        torch.tensor(sides, device=mean.device),
        torch.tensor([own[j] for j in SLIDING], device=mean.device),
    )
