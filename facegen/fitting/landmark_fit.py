"""The landmark stages of the fitting engine: rigid pose (closed form, then Levenberg-Marquardt) and identity +
expression + pose by Levenberg-Marquardt on the 68 landmarks with Gaussian priors, batched over faces.

Only the landmark vertices of the face model enter (mean and bases restricted to them), so a stage costs
microseconds per face. The cost of a face is the MoFA landmark term plus priors:
``sum_j w_j |s (p_j - q_j)|^2 / sum_j w_j + shape_prior |alpha|^2 + expression_prior |beta|^2`` with p the
projected model landmarks, q the observed ones (crop pixels), s = 224 / crop size, alpha and beta in standard
deviations.

The jaw contour (landmarks 0-16) of a 2D annotation follows the face's silhouette, not fixed vertices. With
``contour: sliding`` each cheek landmark (0-5 and 11-16) of the side turned away moves, before every round of
iterations, to the vertex of the model's outline in the current pose nearest to its detected point
(:meth:`~facegen.fitting.landmark_model.LandmarkModel.silhouette`).

Real detections have outliers (a hand, hair, a detector that lost the face). With ``robust`` set, both stages
down-weight points by iteratively reweighted least squares with Geman-McClure weights ``1 / (1 + (e / robust)²)²``
of each point's residual e (pixels at 224²), so a few gross points cannot rotate the face; the pose stage can
also start from several poses (``starts``: the code's, the closed form from all points, from the inner points
only, and each of these mirrored in yaw) and keep the one with the lowest robust cost, which catches fits that
look the wrong way. Blendshape expressions (a model with named expressions, e.g. ICT-FaceKit) stay in [0, 1]
(projected Levenberg-Marquardt); PCA expressions keep their Gaussian prior unbounded.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from facegen.decoder import FaceCode
from facegen.fitting.landmark_model import LandmarkBases, LandmarkModel
from facegen.fitting.levenberg import SolveResult, levenberg_marquardt
from facegen.fitting.pose import closed_form_pose, reprojection_error
from facegen.fitting.schedule import LandmarkStage, PoseStage
from facegen.geometry.rotations import euler_to_matrix
from facegen.losses.landmark import reference_scale

#: The inner 68 points (brows, nose, eyes, mouth): the jaw's convention differs between annotations.
INNER = slice(17, 68)
#: Reweighting passes of the robust pose stage (each followed by its Levenberg-Marquardt iterations).
ROBUST_PASSES = 2


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
        model, clean, root, reference_scale(size), LandmarkBases(points, empty, empty), points.new_zeros(2)
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
            model, torch.nan_to_num(all_target), root, reference_scale(size), bases, points.new_zeros(2)
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
        indices = (
            model.silhouette(code, target[:, :68]) if stage.contour == "sliding" else model.fixed_indices(1)
        )
        bases = model.bases(indices)
        if use_dense:
            bases = model.with_dense(bases)
        moving = [code.rotation, code.translation, code.expression]
        if fixed_identity:  # the identity folded into the mean: a problem without shape components
            neutral = model.points(bases, code.shape, torch.zeros_like(code.expression))
            bases = LandmarkBases(neutral, bases.shape[:, :0], bases.expression)
        else:
            moving.insert(2, code.shape)
        problem = LandmarkProblem(model, clean, root, reference_scale(size), bases, priors)
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
