"""The landmark stages of the fitting engine: rigid pose (closed form, then Levenberg-Marquardt) and identity +
expression + pose by Levenberg-Marquardt on the 68 landmarks with Gaussian priors, batched over faces.

Only the landmark vertices of the face model enter (mean and bases restricted to them), so a stage costs
microseconds per face. The cost of a face is the MoFA landmark term plus priors:
``sum_j w_j |s (p_j - q_j)|^2 / sum_j w_j + shape_prior |alpha|^2 + expression_prior |beta|^2`` with p the
projected model landmarks, q the observed ones (crop pixels), s = 224 / crop size, alpha and beta in standard
deviations.

The jaw contour (landmarks 0-16) of a 2D annotation follows the face's silhouette, not fixed vertices. With
``contour: sliding`` each cheek landmark (0-5 and 11-16) moves, before every round of iterations, to the vertex of
its horizontal band of the model (the same height on the same side, in the face region) that lies furthest out
in the image: the silhouette point of that band in the current pose.

Real detections have outliers (a hand, hair, a detector that lost the face). With ``robust`` set, both stages
down-weight points by iteratively reweighted least squares with Geman-McClure weights ``1 / (1 + (e / robust)²)²``
of each point's residual e (pixels at 224²), so a few gross points cannot rotate the face; the pose stage can
also start from several poses (``starts``: the code's, the closed form from all points, from the inner points
only, and each of these mirrored in yaw) and keep the one with the lowest robust cost, which catches fits that
look the wrong way. Blendshape expressions (a model with named expressions, e.g. ICT-FaceKit) stay in [0, 1]
(projected Levenberg-Marquardt); PCA expressions keep their Gaussian prior unbounded.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from facegen.decoder import FaceCode, FaceDecoder
from facegen.errors import ConfigError
from facegen.fitting.levenberg import SolveResult, levenberg_marquardt
from facegen.fitting.pose import Pose, closed_form_pose, reprojection_error
from facegen.geometry.camera import MODEL_TO_OPENCV
from facegen.geometry.rotations import euler_to_matrix, matrix_to_euler

#: How the jaw contour landmarks correspond to the model (see the module docstring).
Contour = Literal["fixed", "sliding"]
#: How the prior weights of the landmark stage are chosen (see :class:`LandmarkStage`).
Priors = Literal["fixed", "estimated"]
#: Where the pose stage starts (see :class:`PoseStage`).
Starts = Literal["single", "multi"]
#: The cheek landmarks that slide (the chin, 6-10, stays on its vertices).
SLIDING = (0, 1, 2, 3, 4, 5, 11, 12, 13, 14, 15, 16)
#: Yaw (degrees) beyond which the side turned away shows a silhouette instead of its jaw line.
TURNED_AWAY = 10.0
#: Landmark sizes are measured at this crop size (MoFA's landmark loss units).
REFERENCE_SIZE = 224.0
#: The inner 68 points (brows, nose, eyes, mouth): the jaw's convention differs between annotations.
INNER = slice(17, 68)
#: Reweighting passes of the robust pose stage (each followed by its Levenberg-Marquardt iterations).
ROBUST_PASSES = 2


@dataclass
class PoseStage:
    """Stage 1: the closed-form pose (``closed_form``, from the current shape's landmarks; kept per face only
    where it fits better than the code's pose), then ``iterations`` of Levenberg-Marquardt on the 6 pose
    parameters. ``starts``: ``single`` refines that pose; ``multi`` refines several starting poses (the
    module docstring) and keeps the lowest robust cost. ``robust``: Geman-McClure scale in pixels at 224² (0:
    plain least squares)."""

    closed_form: bool = False
    iterations: int = 0
    starts: Starts = "single"
    robust: float = 0.0

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.robust < 0:
            raise ConfigError(
                f"refine.pose.iterations and refine.pose.robust must be >= 0, got {self.iterations}, {self.robust}"
            )
        if self.starts not in ("single", "multi"):
            raise ConfigError(f"refine.pose.starts must be 'single' or 'multi', got {self.starts!r}")

    @property
    def active(self) -> bool:
        return self.closed_form or self.iterations > 0


@dataclass
class LandmarkStage:
    """Stage 2: ``rounds`` x ``iterations`` of Levenberg-Marquardt on pose, shape and expression against the
    landmarks, with Gaussian priors of these weights (the ratio to the landmark term in (pixels at 224²)²);
    ``contour``: ``fixed`` jaw vertices or ``sliding`` silhouette correspondences, re-chosen every round;
    ``dense``: the weight of the detector's dense landmarks (MediaPipe's 468, on the face model's registered
    dense points) relative to the 68 (1: all dense points together count as much as the 68; 0: not used).
    ``robust``: Geman-McClure scale in pixels at 224² (0: plain least squares); the weights are set from each
    round's residuals for the next, so it needs ``rounds`` >= 2.

    ``priors``: ``fixed`` keeps ``shape_prior`` and ``expression_prior`` in every round; ``estimated`` starts with
    them and, after each round, sets each face's prior weights for the next to their maximum-likelihood value
    for the landmark noise that face's residual shows (:func:`estimated_priors`; at least ``min_prior``, the
    ratio of expression to shape prior kept): weak priors where the landmarks fit the model closely (exact or
    dense points), about the configured ones for a detector's noise. Needs ``rounds`` >= 2."""

    iterations: int = 0
    rounds: int = 1
    shape_prior: float = 0.05
    expression_prior: float = 0.05
    contour: Contour = "fixed"
    dense: float = 0.0
    priors: Priors = "fixed"
    min_prior: float = 0.002
    robust: float = 0.0

    def __post_init__(self) -> None:
        if (
            self.iterations < 0
            or self.rounds < 1
            or self.shape_prior < 0
            or self.expression_prior < 0
            or self.dense < 0
            or self.min_prior <= 0
            or self.robust < 0
        ):
            raise ConfigError(
                "refine.landmarks: iterations >= 0, rounds >= 1, priors >= 0, dense >= 0 and robust >= 0, got "
                f"iterations={self.iterations}, rounds={self.rounds}, shape_prior={self.shape_prior}, "
                f"expression_prior={self.expression_prior}, dense={self.dense}, min_prior={self.min_prior}, "
                f"robust={self.robust}"
            )
        if self.contour not in ("fixed", "sliding"):
            raise ConfigError(f"refine.landmarks.contour must be 'fixed' or 'sliding', got {self.contour!r}")
        if self.priors not in ("fixed", "estimated"):
            raise ConfigError(f"refine.landmarks.priors must be 'fixed' or 'estimated', got {self.priors!r}")
        if self.robust > 0 and self.rounds < 2:
            raise ConfigError(
                f"refine.landmarks.robust: robust weights are set from a round's residuals for the next: give "
                f"rounds >= 2 (got {self.rounds})"
            )
        if self.priors == "estimated" and (self.rounds < 2 or self.shape_prior <= 0):
            raise ConfigError(
                "refine.landmarks.priors: estimated priors are set after a first round with shape_prior > 0: "
                f"give rounds >= 2 (got {self.rounds}) and shape_prior > 0 (got {self.shape_prior})"
            )

    @property
    def active(self) -> bool:
        return self.iterations > 0


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

    def silhouette_landmarks(self, code: FaceCode, pixels: Tensor) -> Tensor:
        """(B, 68, 2) the 68 points in the 2D convention (the jaw of a turned face on its visible outline, as
        300-W annotates it), taken from the projected vertices ``pixels`` (B, V, 2) of ``code``'s face."""
        indices = self.silhouette(code)
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
    def candidates(self) -> tuple[Tensor, Tensor] | None:
        """The sliding landmarks' bands (:func:`contour_candidates`), built when first needed."""
        return contour_candidates(self.face_model) if len(self.landmark_indices) == 68 else None

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

    def silhouette(self, code: FaceCode) -> Tensor:
        """(B, 68) landmark vertices with the cheek landmarks of the side turned away from the camera (by more
        than :data:`TURNED_AWAY`) slid to that side's silhouette in the current pose; the side facing the camera
        shows its jaw line, where the fixed vertices lie."""
        indices = self.fixed_indices(code.batch_size).clone()
        if self.candidates is None:
            return indices
        candidates, side = self.candidates  # (12, C) vertex indices (-1 pads), (12,) +1 / -1
        valid = candidates >= 0
        safe = candidates.clamp(min=0)
        with torch.no_grad():
            mean, shape, expression = self.vertex_bases(safe)
            geometry = (
                mean
                + torch.einsum("bk,kjcd->bjcd", code.shape, shape)
                + torch.einsum("bk,kjcd->bjcd", code.expression, expression)
            )  # (B, 12, C, 3)
            pixels = self.project(code.rotation[:, None], code.translation[:, None], geometry)
            # the model's +x axis in the camera frame (the first column of the rotation): its image direction
            # is "outward" for the +x side, its depth tells which side is turned away (OpenCV z: away)
            axis = self.pose_of(code).rotation[:, :, 0]  # (B, 3)
            sideways = torch.nn.functional.normalize(axis[:, :2], dim=-1)  # (B, 2)
            outward = (pixels * sideways[:, None, None]).sum(-1) * side[:, None]  # (B, 12, C)
            outward = outward.masked_fill(~valid, float("-inf"))
            best = outward.argmax(-1)  # (B, 12)
            away = axis[:, 2:3] * side > math.sin(math.radians(TURNED_AWAY))  # (B, 12)
        chosen = torch.gather(safe.expand(code.batch_size, -1, -1), 2, best[..., None])[..., 0]
        sliding = list(SLIDING)
        indices[:, sliding] = torch.where(away, chosen, indices[:, sliding])
        return indices


def contour_candidates(model) -> tuple[Tensor, Tensor] | None:
    """For each sliding landmark, the vertices of its horizontal band: (12, C) indices padded with -1 and the
    side (12,) (+1: the model's +x side). Bands are half the vertical spacing of neighbouring jaw landmarks
    high, on the landmark's side of the chin, in the face region when the model has one, and not behind the
    landmark (a side turned away shows the cheek in front of its jaw line)."""
    mean = model.mean
    jaw = mean[model.landmark_indices[:17]]
    region = (
        model.mask("face") if "face" in model.mask_names else torch.ones_like(mean[:, 0], dtype=torch.bool)
    )
    spacing = (jaw[1:, 1] - jaw[:-1, 1]).abs().mean()
    middle = jaw[8, 0]
    bands, sides = [], []
    for j in SLIDING:
        side = 1.0 if jaw[j, 0] > middle else -1.0
        band = (
            region
            & ((mean[:, 1] - jaw[j, 1]).abs() <= spacing / 2)
            & ((mean[:, 0] - middle) * side > 0)
            & (mean[:, 2] >= jaw[j, 2])
        )
        members = torch.nonzero(band)[:, 0]
        if members.numel() == 0:
            return None
        bands.append(members)
        sides.append(side)
    width_max = max(len(b) for b in bands)
    padded = torch.full((len(bands), width_max), -1, dtype=torch.long, device=mean.device)
    for row, members in enumerate(bands):
        padded[row, : len(members)] = members
    return padded, torch.tensor(sides, device=mean.device)


class LandmarkProblem:
    """Residuals of pose (+ shape + expression) against landmarks, with analytic Jacobians.

    Args:
        model: the landmark model (camera and bases).
        target: (B, 68, 2) observed landmarks in pixels (NaN-free), ``root`` (B, 68) square roots of their
            normalised weights, ``scale`` pixels -> pixels at 224².
        bases: the landmark geometry (a pose-only problem: ``mean`` is the current shape's landmarks and the
            bases have no components).
        priors: (2,) or (B, 2) square roots of the shape and expression prior weights (per face).
    Parameters per face: rotation (3, Euler), translation (3, code units), shape (Ks), expression (Ke).
    """

    def __init__(
        self,
        model: LandmarkModel,
        target: Tensor,
        root: Tensor,
        scale: float,
        bases: LandmarkBases,
        priors: Tensor,
    ) -> None:
        self.model, self.target, self.root, self.scale = model, target, root, scale
        self.bases, self.priors = bases, priors.expand(len(target), 2)
        self.n_shape = bases.shape.shape[1]

    def __call__(self, params: Tensor, with_jacobian: bool) -> tuple[Tensor, Tensor | None]:
        model, bases = self.model, self.bases
        shape, expression = params[:, 6 : 6 + self.n_shape], params[:, 6 + self.n_shape :]
        points = model.points(bases, shape, expression)  # (B, 68, 3) model frame
        rotation, camera = model.camera(params[:, :3], params[:, 3:6], points)
        depth = camera[..., 2:3]
        focal = model.K.diagonal()[:2]
        pixels = model.pixels(camera)
        weight = (self.root * self.scale)[..., None]  # (B, 68, 1)
        data = ((pixels - self.target) * weight).flatten(1)
        residual = torch.cat([data, shape * self.priors[:, :1], expression * self.priors[:, 1:]], -1)
        if not with_jacobian:
            return residual, None
        # d pixel / d camera point: (B, 68, 2, 3)
        inverse = 1.0 / depth[..., 0]
        projection = torch.zeros(*camera.shape[:2], 2, 3, dtype=camera.dtype, device=camera.device)
        projection[..., 0, 0] = focal[0] * inverse
        projection[..., 1, 1] = focal[1] * inverse
        projection[..., :, 2] = -focal * camera[..., :2] * inverse[..., None].pow(2)
        projection = projection * weight[..., None]
        # rotation: d R / d euler_i applied to the points
        angles = params[:, :3]
        d_rotation = torch.func.vmap(torch.func.jacfwd(lambda a: euler_to_matrix(a) @ model.flip))(angles)
        d_camera = torch.einsum("bpqi,bjq->bjpi", d_rotation, points)  # (B, 68, 3, 3 angles)
        rotated = projection @ rotation[:, None]  # d pixel / d model point: (B, 68, 2, 3)
        columns = [
            projection @ d_camera,
            projection * model.unit,
            torch.einsum("bjpm,bkjm->bjpk", rotated, bases.shape),
            torch.einsum("bjpm,bkjm->bjpk", rotated, bases.expression),
        ]
        data_jacobian = torch.cat(columns, -1).flatten(1, 2)  # (B, 136, P)
        batch, n_coefficients = params.shape[0], params.shape[1] - 6
        prior = torch.zeros(batch, n_coefficients, params.shape[1], dtype=params.dtype, device=params.device)
        scales = torch.cat(
            [
                self.priors[:, :1].expand(batch, self.n_shape),
                self.priors[:, 1:].expand(batch, n_coefficients - self.n_shape),
            ],
            1,
        )
        prior[:, :, 6:] = torch.diag_embed(scales)
        return residual, torch.cat([data_jacobian, prior], 1)


def root_weights(weights: Tensor, target: Tensor) -> Tensor:
    """(B, 68) square roots of the weights normalised to sum 1 per face; NaN landmarks get weight 0."""
    weights = weights * torch.isfinite(target).all(-1)
    return (weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)).sqrt()


def point_errors(problem: LandmarkProblem, params: Tensor) -> Tensor:
    """(B, J) distance of each landmark from its target at ``params``, in pixels at 224² (unweighted)."""
    model, bases = problem.model, problem.bases
    shape, expression = params[:, 6 : 6 + problem.n_shape], params[:, 6 + problem.n_shape :]
    pixels = model.project(params[:, :3], params[:, 3:6], model.points(bases, shape, expression))
    return (pixels - problem.target).norm(dim=-1) * problem.scale


def robust_weights(errors: Tensor, scale: float) -> Tensor:
    """(B, J) Geman-McClure weights ``1 / (1 + (e / scale)²)²`` of point errors (B, J); ones for scale 0."""
    if scale <= 0:
        return torch.ones_like(errors)
    return (1.0 + (torch.nan_to_num(errors, nan=0.0) / scale).pow(2)).reciprocal().pow(2)


def robust_cost(errors: Tensor, weights: Tensor, scale: float) -> Tensor:
    """(B,) the Geman-McClure cost ``sum_j w_j e² / (1 + (e / scale)²)`` (least squares for scale 0) of point
    errors (B, J) under normalised weights (B, J)."""
    squared = torch.nan_to_num(errors, nan=0.0).pow(2)
    if scale > 0:
        squared = squared / (1.0 + squared / scale**2)
    return (squared * weights).sum(-1)


def _mirrored(rotation: Tensor) -> Tensor:
    """Code rotations (..., 3: pitch, yaw, roll) turned the other way (yaw and roll negated)."""
    return rotation * rotation.new_tensor([1.0, -1.0, -1.0])


def fit_pose(
    model: LandmarkModel, code: FaceCode, target: Tensor, weights: Tensor, size: int, stage: PoseStage
) -> tuple[FaceCode, SolveResult | None]:
    """Stage 1 on landmarks ``target`` (B, 68, 2) in pixels of ``size``² crops, weights (B, 68). The solver's
    result of a multi-start stage covers every start ((starts x B) rows, start-major)."""
    bases = model.bases(model.fixed_indices(1))
    points = model.points(bases, code.shape, code.expression)  # (B, 68, 3)
    clean = torch.nan_to_num(target)
    root = root_weights(weights, target)
    K = model.K.expand(code.batch_size, 3, 3)
    if stage.starts == "multi":
        return _multi_start_pose(model, code, points, clean, weights, target, size, stage)
    if stage.closed_form:
        weight = root.pow(2)
        candidate = closed_form_pose(points, clean, K, weight)
        cost_now = reprojection_error(model.pose_of(code), points, clean, K, weight)
        take = (reprojection_error(candidate, points, clean, K, weight) < cost_now) | ~torch.isfinite(
            cost_now
        )
        rotation, translation = model.code_pose(candidate)
        code = code._replace(
            rotation=torch.where(take[:, None], rotation.to(code.rotation), code.rotation),
            translation=torch.where(take[:, None], translation.to(code.rotation), code.translation),
        )
    if stage.iterations == 0:
        return code, None
    params = torch.cat([code.rotation, code.translation], -1)
    empty = points.new_zeros(code.batch_size, 0, *points.shape[1:])
    problem = LandmarkProblem(
        model, clean, root, REFERENCE_SIZE / size, LandmarkBases(points, empty, empty), points.new_zeros(2)
    )
    result = levenberg_marquardt(problem, params, stage.iterations)
    return code._replace(rotation=result.params[:, :3], translation=result.params[:, 3:]), result


def _multi_start_pose(
    model: LandmarkModel,
    code: FaceCode,
    points: Tensor,
    clean: Tensor,
    weights: Tensor,
    target: Tensor,
    size: int,
    stage: PoseStage,
) -> tuple[FaceCode, SolveResult]:
    """The pose stage from several starts at once (module docstring): the code's pose, the closed form from
    all points and from the inner points (with ``closed_form``), each also mirrored in yaw; every start refined
    by robustly reweighted Levenberg-Marquardt, the lowest robust cost kept per face."""
    batch = code.batch_size
    K = model.K.expand(batch, 3, 3)
    starts = [(code.rotation, code.translation)]
    if stage.closed_form:
        inner = weights.clone()
        inner[:, :17] = 0
        for chosen in (weights, inner):
            pose = closed_form_pose(points, clean, K, root_weights(chosen, target).pow(2))
            rotation, translation = model.code_pose(pose)
            starts.append((rotation.to(code.rotation), translation.to(code.rotation)))
    starts += [(_mirrored(rotation), translation) for rotation, translation in starts]
    count = len(starts)

    def repeated(tensor: Tensor) -> Tensor:
        """``tensor`` (B, ...) once per start: (count * B, ...), start-major as ``params``."""
        return tensor.repeat(count, *([1] * (tensor.dim() - 1)))

    params = torch.cat([torch.cat(pose, -1) for pose in starts])  # (count * B, 6)
    all_points, all_target, all_weights = repeated(points), repeated(target), repeated(weights)
    empty = points.new_zeros(count * batch, 0, *points.shape[1:])
    bases = LandmarkBases(all_points, empty, empty)
    robust = torch.ones_like(all_weights)
    for _ in range(ROBUST_PASSES if stage.robust > 0 else 1):
        root = root_weights(all_weights * robust, all_target)
        problem = LandmarkProblem(
            model, torch.nan_to_num(all_target), root, REFERENCE_SIZE / size, bases, points.new_zeros(2)
        )
        result = levenberg_marquardt(problem, params, stage.iterations)
        params = result.params
        errors = point_errors(problem, params)
        robust = robust_weights(errors, stage.robust)
    normalised = root_weights(all_weights, all_target).pow(2)
    cost = robust_cost(errors, normalised, stage.robust).reshape(count, batch)
    best = torch.where(torch.isfinite(cost), cost, math.inf).argmin(0)  # (B,)
    chosen = params.reshape(count, batch, 6)[best, torch.arange(batch)]
    return code._replace(rotation=chosen[:, :3], translation=chosen[:, 3:]), result


def fit_landmarks(
    model: LandmarkModel,
    code: FaceCode,
    target: Tensor,
    weights: Tensor,
    size: int,
    stage: LandmarkStage,
    fixed_identity: bool = False,
    dense: Tensor | None = None,
) -> tuple[FaceCode, list[SolveResult]]:
    """Stage 2 on landmarks ``target`` (B, 68, 2) in pixels of ``size``² crops, weights (B, 68): pose, shape
    and expression (the code's sizes, at most the model's) move; the other parts stay. ``fixed_identity``:
    the shape stays too (only pose and expression move), e.g. for the frames of a video that share one
    identity. ``dense``: (B, N, 2) dense landmarks (NaN where missing) fitted on the face model's dense points
    with ``stage.dense`` (ignored when 0, and when every point is missing: then the fit is the one without them,
    bit for bit)."""
    n_shape, n_expression = code.shape.shape[1], code.expression.shape[1]
    if (n_shape, n_expression) != (model.n_shape, model.n_expression):
        raise ValueError(
            f"code has {n_shape} shape / {n_expression} expression entries, the landmark model "
            f"{model.n_shape} / {model.n_expression}"
        )
    use_dense = dense is not None and stage.dense > 0 and bool(dense.isfinite().any())
    if use_dense:
        share = stage.dense * weights.shape[1] / dense.shape[1]
        weights = torch.cat([weights, torch.full(dense.shape[:2], share).to(weights)], 1)
        target = torch.cat([target, dense.to(target)], 1)
    clean = torch.nan_to_num(target)
    robust = torch.ones_like(weights)
    priors = clean.new_tensor([stage.shape_prior, stage.expression_prior]).sqrt()
    results = []
    rounds = stage.rounds if stage.iterations else 0
    code = code._replace(expression=model.face_model.clip_expression(code.expression))
    bounds = model.parameter_bounds(0 if fixed_identity else n_shape)
    for index in range(rounds):
        root = root_weights(weights * robust, target)
        indices = model.silhouette(code) if stage.contour == "sliding" else model.fixed_indices(1)
        bases = model.bases(indices)
        if use_dense:
            bases = model.with_dense(bases)
        moving = [code.rotation, code.translation, code.expression]
        if fixed_identity:  # the identity folded into the mean: a problem without shape components
            neutral = model.points(bases, code.shape, torch.zeros_like(code.expression))
            bases = LandmarkBases(neutral, bases.shape[:, :0], bases.expression)
        else:
            moving.insert(2, code.shape)
        problem = LandmarkProblem(model, clean, root, REFERENCE_SIZE / size, bases, priors)
        result = levenberg_marquardt(problem, torch.cat(moving, -1), stage.iterations, bounds=bounds)
        if stage.priors == "estimated" and index < rounds - 1:  # for the next round
            priors = estimated_priors(problem, result.params, stage)
        if stage.robust > 0 and index < rounds - 1:
            robust = robust_weights(point_errors(problem, result.params), stage.robust)
        p, free_shape = result.params, 0 if fixed_identity else n_shape
        code = code._replace(
            rotation=p[:, :3],
            translation=p[:, 3:6],
            shape=code.shape if fixed_identity else p[:, 6 : 6 + n_shape],
            expression=p[:, 6 + free_shape :],
        )
        results.append(result)
    return code, results


def estimated_priors(problem: LandmarkProblem, params: Tensor, stage: LandmarkStage) -> Tensor:
    """(B, 2) square roots of each face's maximum-likelihood shape and expression prior weights at ``params``
    (B, P), a solution of ``problem``.

    With Gaussian landmark noise of sigma pixels per coordinate (at 224²) and unit-variance coefficients, the
    posterior's negative log-likelihood is proportional to the stage's cost with prior weight sigma² / L, L the
    effective number of landmarks (1 / sum of squared normalised weights; 68 with equal weights). sigma² is
    estimated from the weighted residual r² = sum_j w_j |p_j - q_j|² as r² / (2 (1 - d / 2L)), where d is the
    fit's effective number of parameters (the trace of its hat matrix, (J'J + P)^-1 J'J with J the landmark
    Jacobian and P the prior's curvature), which the fit has absorbed from the noise. The expression prior keeps
    its configured ratio to the shape prior; both are at least ``stage.min_prior`` (in the configured ratio)."""
    residual, jacobian = problem(params, with_jacobian=True)
    rows = problem.target.shape[1] * 2
    data, fitted = residual[:, :rows].double(), jacobian[:, :rows].double()
    curvature = fitted.transpose(1, 2) @ fitted
    prior = jacobian[:, rows:].double()
    hat, singular = torch.linalg.solve_ex(curvature + prior.transpose(1, 2) @ prior, curvature)
    effective = hat.diagonal(dim1=1, dim2=2).sum(-1).masked_fill(singular != 0, math.nan)  # (B,)
    weights = problem.root.double().pow(2)
    landmarks = 1.0 / weights.pow(2).sum(-1).clamp(min=1e-12)  # (B,)
    left = (1 - effective / (2 * landmarks)).clamp(min=0.1)
    sigma2 = data.pow(2).sum(-1) / (2 * left)
    shape = (sigma2 / landmarks).clamp(min=stage.min_prior)
    ratio = stage.expression_prior / stage.shape_prior
    found = torch.stack([shape, shape * ratio], -1).sqrt().to(params.dtype)
    # a face without usable landmarks or a diverged fit keeps the priors it had
    return torch.where(torch.isfinite(found).all(-1, keepdim=True), found, problem.priors)
