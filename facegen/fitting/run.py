"""Carrying out a fitting schedule (:func:`fit`): the stages of a :class:`~facegen.fitting.schedule.FitSchedule` in
order on :class:`~facegen.fitting.problem.FitTargets`, each timed, with both photometric solvers, and faces whose
fit diverged given back their starting code.

Every stage runs outside inference mode on clones of its inputs (Lightning's predict loop runs in inference
mode; the solvers need ordinary tensors), so a fit can be called from any hook.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch
from torch import Tensor

from facegen.decoder import FaceCode
from facegen.fitting.landmark_fit import fit_landmarks, fit_pose
from facegen.fitting.landmark_model import LandmarkModel
from facegen.fitting.photometric_fit import PhotometricSetup, fit_photometric
from facegen.fitting.problem import FitProblem, FitTargets, clone_out_of_inference
from facegen.fitting.schedule import FitSchedule, LandmarkStage, PhotometricStage, check_solver
from facegen.geometry.precision import float32


class Fitted(NamedTuple):
    """A fit's result: the code, the photometric stage's objective (batch mean) before each of its steps, the
    seconds each stage took (``pose``, ``landmarks``, ``photometric``; stages that ran), and ``diverged`` (B,)
    bool: faces whose fit ended in a non-finite code, given back their starting code."""

    code: FaceCode
    history: list[float]
    seconds: dict[str, float]
    diverged: Tensor


def fit(
    problem: FitProblem,
    targets: FitTargets,
    code: FaceCode,
    schedule: FitSchedule,
    fixed_identity: bool = False,
) -> Fitted:
    """``code`` (B faces) fitted to ``targets`` by ``schedule``: the pose stage and the landmark stage on the
    targets' landmarks and weights (the landmark stage also on the dense landmarks when it weighs them and the
    face model has them; ``fixed_identity``: it moves pose and expression only), then the photometric stage
    (Adam on ``problem.objective``, or Levenberg-Marquardt on its least-squares form)."""
    code = start = code.upcast()
    seconds: dict[str, float] = {}
    if schedule.pose.active:
        started = time.perf_counter()
        model = LandmarkModel(problem.decoder, code.shape.shape[1], code.expression.shape[1])
        with torch.inference_mode(False), torch.no_grad():
            code, landmarks, weights = clone_out_of_inference((code, targets.landmarks, targets.weights))
            code, _ = fit_pose(model, code, landmarks, weights, targets.size, schedule.pose)
        seconds["pose"] = time.perf_counter() - started
    if schedule.landmarks.active:
        started = time.perf_counter()
        code = _landmark_stage(problem, targets, code, schedule.landmarks, fixed_identity)
        seconds["landmarks"] = time.perf_counter() - started
    history: list[float] = []
    if schedule.photometric.steps:
        started = time.perf_counter()
        if schedule.photometric.solver == "levenberg":
            check_solver(schedule, problem.photometric)
            code, history = _levenberg(problem, targets, code, schedule.photometric)
        else:
            code, history = _adam(problem, targets, code, schedule.photometric)
        seconds["photometric"] = time.perf_counter() - started
    diverged = ~torch.isfinite(code.flatten()).all(-1)
    if diverged.any():
        code = FaceCode(
            *(torch.where(diverged[:, None], old, new) for old, new in zip(start, code, strict=True))
        )
    return Fitted(code, history, seconds, diverged)


def _landmark_stage(
    problem: FitProblem, targets: FitTargets, code: FaceCode, stage: LandmarkStage, fixed_identity: bool
) -> FaceCode:
    model = LandmarkModel(problem.decoder, code.shape.shape[1], code.expression.shape[1])
    wanted = stage.dense > 0 and problem.decoder.model.dense_scheme is not None
    with torch.inference_mode(False), torch.no_grad():
        code, landmarks, weights, dense = clone_out_of_inference(
            (code, targets.landmarks, targets.weights, targets.dense if wanted else None)
        )
        code, _ = fit_landmarks(
            model, code, landmarks, weights, targets.size, stage, fixed_identity=fixed_identity, dense=dense
        )
    return code


def _levenberg(
    problem: FitProblem, targets: FitTargets, code: FaceCode, stage: PhotometricStage
) -> tuple[FaceCode, list[float]]:
    """The photometric stage by Levenberg-Marquardt (:mod:`facegen.fitting.photometric_fit`); returns the code
    and the objective (batch mean) before each iteration."""
    with torch.inference_mode(False), torch.no_grad(), float32(code.rotation.device):
        code, targets = clone_out_of_inference((code, targets))
        targets = FitTargets(
            targets.image.float(), targets.mask.float(), targets.landmarks.float(), targets.weights
        )
        setup = PhotometricSetup(problem.decoder, stage.parts, problem.region, problem.weights)
        fitted, cost = fit_photometric(setup, code, targets, stage.steps)
    return fitted, cost[:-1].mean(-1).tolist()


def _adam(
    problem: FitProblem, targets: FitTargets, code: FaceCode, stage: PhotometricStage
) -> tuple[FaceCode, list[float]]:
    """``stage.steps`` of Adam at ``stage.lr`` on ``problem.objective``, moving ``stage.parts``; returns the code
    (detached) and the objective before each step. When only reflectance and light move, what depends on the
    geometry is computed once instead of at every step (same values: pose, shape and expression do not move):
    by the problem's ``held_geometry`` when it has one, else the decoded geometry."""
    decoder, objective = problem.decoder, problem.objective
    geometry = held = None
    if stage.geometry_fixed and problem.held_geometry is not None:
        with torch.inference_mode(False), torch.no_grad():
            held = problem.held_geometry(*clone_out_of_inference((targets, code)))
    elif stage.geometry_fixed:
        with torch.inference_mode(False), torch.no_grad():
            geometry = clone_out_of_inference(decoder(code))

    def loss(targets: FitTargets, moving: FaceCode) -> Tensor:
        if held is not None:
            return held(moving)
        if geometry is None:
            return objective(targets, moving, None)
        with float32(moving.albedo.device):
            decoded = geometry._replace(albedo=decoder.colours(moving.upcast()))
        return objective(targets, moving, decoded)

    with torch.inference_mode(False), torch.enable_grad():
        targets = clone_out_of_inference(targets)
        values = {part: value.detach().clone() for part, value in code.to_dict().items()}
        free = [values[part].requires_grad_() for part in stage.parts if values[part].numel()]
        optimizer = torch.optim.Adam(free, lr=stage.lr)
        history = []
        for _ in range(stage.steps):
            value = loss(targets, FaceCode(**values))
            history.append(value.item())
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
    return FaceCode(**{part: value.detach() for part, value in values.items()}), history
