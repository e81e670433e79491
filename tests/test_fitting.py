"""The fitting engine: the closed-form pose is exact on noiseless landmarks, the analytic Jacobians equal
autodiff, Levenberg-Marquardt never raises the cost and a bad face does not disturb the others, the staged
schedule of MoFA from the mean face, and the silhouette correspondences of the jaw contour."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from facegen.data.synth import SynthOptions, sample_code
from facegen.decoder.code import PARTS, FaceCode
from facegen.errors import ConfigError
from facegen.fitting import (
    LandmarkModel,
    LandmarkStage,
    PoseStage,
    closed_form_pose,
    fit_landmarks,
    fit_pose,
    levenberg_marquardt,
)
from facegen.fitting.landmark_fit import LandmarkProblem, estimated_priors, root_weights
from facegen.fitting.landmark_model import SLIDING
from facegen.fitting.photometric_fit import PhotometricProblem, PhotometricSetup, fit_photometric
from facegen.fitting.problem import FitTargets
from facegen.fitting.schedule import FitSchedule, PhotometricStage
from facegen.losses import landmark_error
from facegen.losses.weights import LossWeights
from facegen.tasks import MoFA
from tests.data_helpers import face_batch

SIZE = 128


@pytest.fixture(scope="module")
def model() -> MoFA:
    return MoFA(image_size=SIZE, depths=(1,), width=8).eval()


def faces(model: MoFA, count: int, seed: int = 0, **spread):
    """Random codes (the synthetic data's distribution, or ``spread`` overriding it) and their landmarks."""
    code = sample_code(model.layout, count, SynthOptions(**spread), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return code, model.decoder(code).landmarks


def test_closed_form_pose_is_exact_on_noiseless_landmarks(model):
    code, landmarks = faces(model, 16, yaw=70.0, pitch=25.0, roll=30.0)
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    points = landmark_model.points(
        landmark_model.bases(landmark_model.fixed_indices(16)), code.shape, code.expression
    )
    K = model.decoder.intrinsics.expand(16, 3, 3)
    pose = closed_form_pose(points, landmarks, K, torch.ones(16, 68))
    truth = landmark_model.pose_of(code)
    assert (pose.rotation - truth.rotation).abs().max() < 1e-5  # float32 landmarks
    assert (pose.translation - truth.translation).norm(dim=-1).max() < 1e-3 * truth.translation.norm(
        dim=-1
    ).min()


def test_pose_stage_from_the_mean_face_recovers_the_rotation(model):
    code, landmarks = faces(model, 8, seed=1, shape=0.0, expression=0.0)  # the mean face's own landmarks
    start = model.layout.zeros(8)
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    fitted, result = fit_pose(landmark_model, start, landmarks, torch.ones(8, 68), SIZE, PoseStage(True, 3))
    assert (
        landmark_model.pose_of(fitted).rotation - landmark_model.pose_of(code).rotation
    ).abs().max() < 1e-4
    assert (result.cost[1:] <= result.cost[:-1]).all()


def autodiff_problem(residual, data):
    """A batched problem from a per-face ``residual(params (P,), *data_b) -> (M,)``; Jacobians by forward-mode
    autodiff (``torch.func.jacfwd``), vmapped over the faces."""
    residuals, jacobian = torch.func.vmap(residual), torch.func.vmap(torch.func.jacfwd(residual))
    return lambda params, with_jacobian: (
        residuals(params, *data),
        jacobian(params, *data) if with_jacobian else None,
    )


def test_landmark_jacobian_equals_autodiff(model):
    torch.set_default_dtype(torch.float64)
    try:
        double = MoFA(image_size=SIZE, depths=(1,), width=8).double().eval()
        code, landmarks = faces(double, 3, seed=2)
        landmark_model = LandmarkModel(double.decoder, double.layout.shape, double.layout.expression)
        bases = landmark_model.bases(landmark_model.fixed_indices(3))
        root = root_weights(torch.rand(3, 68), landmarks)
        priors = torch.tensor([0.3, 0.2])
        params = torch.cat([code.rotation, code.translation, code.shape, code.expression], -1)
        params = params + 0.05 * torch.randn(params.shape, generator=torch.Generator().manual_seed(0))
        analytic = LandmarkProblem(landmark_model, landmarks, root, 1.7, bases, priors)

        def single(p, target, weights, mean, shape, expression):
            problem = LandmarkProblem(
                landmark_model,
                target[None],
                weights[None],
                1.7,
                type(bases)(mean[None], shape[None], expression[None]),
                priors,
            )
            return problem(p[None], False)[0][0]

        residual, jacobian = analytic(params, True)
        expected_residual, expected = autodiff_problem(single, (landmarks, root, *bases))(params, True)
    finally:
        torch.set_default_dtype(torch.float32)
    torch.testing.assert_close(residual, expected_residual)
    torch.testing.assert_close(jacobian, expected, rtol=1e-9, atol=1e-9)


def test_levenberg_marquardt_never_raises_the_cost_and_a_bad_face_stays_alone():
    """A Rosenbrock valley per face; face 1 starts where the residual is not finite."""

    def problem(params, with_jacobian):
        x, y = params[:, 0], params[:, 1]
        residual = torch.stack([1 - x, 10 * (y - x.pow(2))], -1) * params[:, 2:3]
        if not with_jacobian:
            return residual, None
        zero = torch.zeros_like(x)
        rows = [
            torch.stack([-torch.ones_like(x), zero, zero], -1),
            torch.stack([-20 * x, 10 + zero, zero], -1),
        ]
        return residual, torch.stack(rows, 1) * params[:, 2:3, None]

    start = torch.tensor([[-1.2, 1.0, 1.0], [float("nan"), 1.0, 1.0], [0.5, -0.5, 1.0]], dtype=torch.float64)
    # the third parameter only scales the residual: keep it fixed by zeroing its Jacobian column above
    result = levenberg_marquardt(problem, start, iterations=60)
    assert result.finite.tolist() == [True, False, True]
    good = result.cost[:, [0, 2]]
    assert (good[1:] <= good[:-1]).all()
    torch.testing.assert_close(
        result.params[[0, 2], :2], torch.ones(2, 2, dtype=torch.float64), atol=1e-6, rtol=0
    )
    assert torch.isnan(result.params[1, 0])  # not moved


@pytest.mark.parametrize("priors", ["fixed", "estimated"])
def test_nan_landmarks_of_one_face_leave_the_others_alone(model, priors):
    code, landmarks = faces(model, 3, seed=4)
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    stage = LandmarkStage(iterations=5, rounds=2, contour="fixed", priors=priors)
    start = model.layout.zeros(3)
    alone, _ = fit_landmarks(landmark_model, start, landmarks, torch.ones(3, 68), SIZE, stage)
    broken = landmarks.clone()
    broken[1] = float("nan")
    together, _ = fit_landmarks(landmark_model, start, broken, torch.ones(3, 68), SIZE, stage)
    torch.testing.assert_close(together.shape[[0, 2]], alone.shape[[0, 2]])
    assert torch.isfinite(together.shape[1]).all()


def test_the_staged_schedule_fits_landmarks_from_the_mean_face(model):
    code, landmarks = faces(model, 4, seed=5)
    rendered = model.decoder.render(model.decoder(code), code.light, background=0.3)
    batch = face_batch(rendered.image.detach(), landmarks, rendered.mask.float())
    start = model(batch.image)
    options = FitSchedule(PoseStage(True, 3), LandmarkStage(iterations=8, shape_prior=0.01, contour="fixed"))
    fitted = model.fitted(batch, start, options)
    assert set(fitted.seconds) == {"pose", "landmarks"} and fitted.history == []
    before, _ = landmark_error(model.decoder(start).landmarks, landmarks)
    after, _ = landmark_error(model.decoder(fitted.code).landmarks, landmarks)
    assert before.min() > 3 and after.max() < 0.5, (before, after)


def test_a_face_whose_fit_diverges_gets_its_starting_code_back_and_is_reported(model, monkeypatch):
    import facegen.fitting.run as run_module

    code, landmarks = faces(model, 3, seed=6)
    batch = face_batch(torch.rand(3, 3, SIZE, SIZE), landmarks)
    real = run_module.fit_landmarks

    def diverging(*args, **kwargs):
        fitted, results = real(*args, **kwargs)
        return fitted._replace(shape=fitted.shape.index_fill(0, torch.tensor([1]), float("inf"))), results

    monkeypatch.setattr(run_module, "fit_landmarks", diverging)
    start = model(batch.image)
    fitted = model.fitted(batch, start, FitSchedule(landmarks=LandmarkStage(iterations=3)))
    assert fitted.diverged.tolist() == [False, True, False]
    assert torch.equal(fitted.code.shape[1], start.shape[1]) and not torch.equal(
        fitted.code.shape[0], start.shape[0]
    )


def test_silhouette_moves_only_the_jaw_of_the_side_turned_away(model):
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    frontal = model.layout.zeros(2)
    assert torch.equal(landmark_model.silhouette(frontal), landmark_model.fixed_indices(2))
    yawed = frontal._replace(
        rotation=torch.tensor([[0.0, math.radians(40), 0.0], [0.0, -math.radians(40), 0.0]])
    )
    slid = landmark_model.silhouette(yawed)
    moved = slid != landmark_model.fixed_indices(2)
    sliding = torch.tensor(SLIDING)
    assert moved[:, sliding].any(1).all() and not moved[:, [i for i in range(68) if i not in SLIDING]].any()
    left, right = sliding[:6], sliding[6:]  # the two sides move under opposite yaws
    assert moved[0, left].any() != moved[0, right].any()
    assert moved[0, left].any() != moved[1, left].any()


def test_stage_settings_are_checked():
    with pytest.raises(ConfigError, match="fit.landmarks"):
        LandmarkStage(iterations=-1)
    with pytest.raises(ConfigError, match="fit.landmarks.contour"):
        LandmarkStage(contour="loose")
    with pytest.raises(ConfigError, match="fit.pose.iterations"):
        PoseStage(iterations=-2)
    with pytest.raises(ConfigError, match="rounds >= 2"):
        LandmarkStage(iterations=5, priors="estimated")
    with pytest.raises(ConfigError, match="fit.landmarks.priors"):
        LandmarkStage(priors="learned")
    with pytest.raises(ConfigError, match="fit.pose.starts"):
        PoseStage(starts="many")
    with pytest.raises(ConfigError, match="fit.landmarks.robust: .* rounds >= 2"):
        LandmarkStage(iterations=5, robust=4.0)


def test_estimated_priors_follow_the_landmark_noise(model):
    """Per face, the estimated prior weight is sigma² / 68 for landmarks with sigma pixels of noise (at 224²)
    and the floor for exact ones; with exact landmarks the second round fits them closer."""
    code, landmarks = faces(model, 8, seed=7)
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    stage = LandmarkStage(iterations=10, rounds=2, shape_prior=0.1, expression_prior=0.05, priors="estimated")
    start, weights = model.layout.zeros(8), torch.ones(8, 68)
    start, _ = fit_pose(landmark_model, start, landmarks, weights, SIZE, PoseStage(True, 3))
    sigma = torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 3.0, 3.0])  # pixels at 224²
    noisy = landmarks + torch.randn(landmarks.shape, generator=torch.Generator().manual_seed(0)) * (
        sigma * SIZE / 224
    ).view(8, 1, 1)
    one_round = LandmarkStage(iterations=10, shape_prior=0.1, expression_prior=0.05)
    fixed, _ = fit_landmarks(landmark_model, start, noisy, weights, SIZE, one_round)
    root = root_weights(weights, noisy)
    problem = LandmarkProblem(
        landmark_model,
        noisy,
        root,
        224 / SIZE,
        landmark_model.bases(landmark_model.fixed_indices(1)),
        torch.tensor([0.1, 0.05]).sqrt(),
    )
    params = torch.cat([fixed.rotation, fixed.translation, fixed.shape, fixed.expression], -1)
    found = estimated_priors(problem, params, stage).pow(2)  # (8, 2) weights
    assert torch.allclose(found[:, 1], found[:, 0] * 0.5)  # the configured ratio
    assert torch.equal(found[:4, 0], torch.full((4,), stage.min_prior))  # exact: the floor
    expected = sigma[4:].pow(2) / 68
    assert ((found[4:, 0] / expected - 1).abs() < 0.35).all(), (found[4:, 0], expected)
    estimated, results = fit_landmarks(landmark_model, start, noisy, weights, SIZE, stage)
    assert len(results) == 2
    before, _ = landmark_error(model.decoder(fixed).landmarks, landmarks)
    after, _ = landmark_error(model.decoder(estimated).landmarks, landmarks)
    assert (after[:4] < 0.5 * before[:4]).all(), (before, after)


def photometric_problem(model: MoFA, code, truth, parts=PARTS):
    """The photometric problem of the faces rendered from ``truth``, fitted from ``code``."""
    targets = FitTargets(*problem_targets(model, truth))
    return PhotometricProblem(
        PhotometricSetup(model.decoder, parts, model.region, LossWeights(shape=1e-4)), code, targets
    )


def test_photometric_jacobian_equals_forward_mode_autodiff(model):
    truth, _ = faces(model, 3, seed=7)
    start, _ = faces(model, 3, seed=8)
    with torch.no_grad():
        start = start._replace(rotation=truth.rotation + 0.05, translation=truth.translation)
        problem = photometric_problem(model, start, truth)
    params = problem.params()
    residual, jacobian = problem(params, with_jacobian=True)
    reference = torch.func.jacfwd(lambda p: problem(p, with_jacobian=False)[0])(params)  # (B, M, B, P)
    reference = reference.diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # each face's own block
    assert jacobian.shape == reference.shape == (3, residual.shape[1], params.shape[1])
    assert problem.photo_root.count_nonzero() > 1000  # the photometric rows are there
    for part in problem.moving:
        columns = problem.columns(part)
        error = (jacobian[..., columns] - reference[..., columns]).abs().max()
        assert error <= 1e-4 * reference[..., columns].abs().max(), part


def test_photometric_levenberg_lowers_the_objective_and_moves_only_its_parts(model):
    truth, _ = faces(model, 4, seed=9)
    with torch.no_grad():
        start = truth._replace(shape=truth.shape * 0.5, light=truth.light * 0.8, albedo=truth.albedo * 0.0)
        targets = FitTargets(*problem_targets(model, truth))
        parts = ("shape", "albedo", "light")
        setup = PhotometricSetup(model.decoder, parts, model.region, LossWeights(shape=1e-4))
        fitted, cost = fit_photometric(setup, start, targets, 3)
    assert cost.shape == (4, 4)
    assert (cost[1:] <= cost[:-1]).all() and (cost[-1] < 0.5 * cost[0]).all(), cost
    assert torch.equal(fitted.expression, start.expression) and torch.equal(fitted.rotation, start.rotation)
    with torch.no_grad():
        error = [
            (model.decoder(c).vertices - model.decoder(truth).vertices)[:, model.region].norm(dim=-1).mean(-1)
            for c in (start, fitted)
        ]
    assert error[1].mean() < 0.75 * error[0].mean(), error  # the shape moves towards the faces' own


def problem_targets(model: MoFA, truth):
    """Images, masks, landmarks and landmark weights of the faces ``truth`` rendered on grey."""
    rendered = model.decoder.render(model.decoder(truth), truth.light, background=0.3)
    return (
        rendered.image.detach(),
        rendered.mask.float(),
        model.decoder(truth).landmarks,
        torch.ones(len(truth.light), 68),
    )


def test_levenberg_photometric_stage_runs_in_the_schedule_and_needs_the_points_term(model):
    truth, landmarks = faces(model, 2, seed=10)
    rendered = model.decoder.render(model.decoder(truth), truth.light, background=0.3)
    batch = face_batch(rendered.image.detach(), landmarks, rendered.mask.float())
    stage = PhotometricStage(steps=2, parts=("albedo", "light"), solver="levenberg")
    with torch.inference_mode():  # as in predict
        fitted = model.fitted(batch, model(batch.image), FitSchedule(photometric=stage))
    assert set(fitted.seconds) == {"photometric"} and len(fitted.history) == 2
    assert fitted.history[1] < fitted.history[0]
    with pytest.raises(ConfigError, match="model.photometric: points"):
        MoFA(
            image_size=SIZE,
            depths=(1,),
            width=8,
            photometric="raster",
            fit=FitSchedule(photometric=stage),
        )
    with pytest.raises(ConfigError, match="fit.photometric.solver"):
        PhotometricStage(solver="newton")


def test_a_group_without_photometric_points_fits_its_landmarks_alone(model):
    truth, _ = faces(model, 2, seed=11)
    image, _, landmarks, weights = problem_targets(model, truth)
    empty = FitTargets(image, torch.zeros_like(image[:, :1]), landmarks, weights)
    start = truth._replace(translation=truth.translation + 0.05)
    with torch.no_grad():
        setup = PhotometricSetup(model.decoder, PARTS, model.region, LossWeights(landmark=1.0))
        fitted, cost = fit_photometric(setup, start, empty, 2)
    assert torch.isfinite(cost).all() and (cost[-1] < cost[0]).all()
    assert torch.isfinite(fitted.flatten()).all()


def test_the_slid_jaw_lies_on_the_rendered_outline_of_a_turned_face(model):
    """At 50° yaw the slid cheek landmarks of the side turned away sit on the edge of the rendered face; the
    fixed jaw vertices there are hidden inside it."""
    code = model.layout.zeros(2)._replace(
        rotation=torch.tensor([[0.0, math.radians(50), 0.0], [0.0, -math.radians(50), 0.0]]),
        light=torch.zeros(2, 27),
    )
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    with torch.no_grad():
        decoded = model.decoder(code)
        mask = model.decoder.render(decoded, code.light).mask[:, 0] > 0.5  # (2, S, S)
        slid = landmark_model.silhouette_landmarks(code, decoded.pixels)
    inside = torch.nn.functional.max_pool2d((~mask).float()[:, None], 3, 1, 1)[:, 0] > 0
    edge = mask & inside  # face pixels next to background
    moved = landmark_model.silhouette(code) != landmark_model.fixed_indices(2)
    for face in range(2):
        ys, xs = torch.nonzero(edge[face], as_tuple=True)
        outline = torch.stack([xs, ys], -1).float()
        distance = torch.cdist(slid[face][moved[face]], outline).min(-1).values
        fixed = torch.cdist(decoded.landmarks[face][moved[face]], outline).min(-1).values
        assert moved[face].sum() >= 3 and distance.max() < 2.5, distance
        assert fixed.mean() > 2 * distance.mean()


def test_a_few_gross_outliers_do_not_move_the_robust_pose(model):
    code, landmarks = faces(model, 4, seed=3, shape=0.0, expression=0.0, yaw=40.0)
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    spoiled = landmarks.clone()
    spoiled[:, [0, 8, 30, 48, 62]] += 0.3 * SIZE  # five points thrown far off, as a hand or hair would
    start, weights = model.layout.zeros(4), torch.ones(4, 68)
    truth = landmark_model.pose_of(code).rotation

    def angle_error(stage: PoseStage) -> float:
        fitted, _ = fit_pose(landmark_model, start, spoiled, weights, SIZE, stage)
        difference = landmark_model.pose_of(fitted).rotation.transpose(1, 2) @ truth
        return float(torch.arccos(((difference.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)).max())

    plain = angle_error(PoseStage(True, 5, "multi", robust=0.0))
    robust = angle_error(PoseStage(True, 5, "multi", robust=4.0))
    assert math.degrees(robust) < 1.0 < math.degrees(plain), (math.degrees(robust), math.degrees(plain))


def test_a_mirrored_start_recovers_a_face_that_looks_the_other_way(model):
    """Started at -75° yaw on a face turned +75° (and the reverse), the single start stays on the wrong side;
    the multi-start stage finds the right one."""
    code, landmarks = faces(model, 2, seed=4, shape=0.0, expression=0.0, pitch=0.0, roll=0.0)
    yaw = torch.tensor([math.radians(75), -math.radians(75)])
    code = code._replace(rotation=torch.stack([torch.zeros(2), yaw, torch.zeros(2)], -1))
    with torch.no_grad():
        landmarks = model.decoder(code).landmarks
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    wrong = code._replace(rotation=code.rotation * torch.tensor([1.0, -1.0, 1.0]))
    weights = torch.ones(2, 68)
    single, _ = fit_pose(landmark_model, wrong, landmarks, weights, SIZE, PoseStage(False, 5))
    multi, _ = fit_pose(landmark_model, wrong, landmarks, weights, SIZE, PoseStage(False, 5, "multi", 4.0))
    assert (single.rotation[:, 1] * yaw < 0).all()  # stuck looking the other way
    assert (multi.rotation[:, 1] - yaw).abs().max() < math.radians(1.0)


def test_blendshape_expressions_stay_within_their_bounds_and_pca_ones_do_not():
    from facegen.morphable.builtin import builtin_model
    from facegen.morphable.model import MorphableModel

    arrays = builtin_model().to_arrays()
    blendshapes = MorphableModel.from_arrays({**arrays, "expression_kind": "blendshape"}, source="bs")
    assert builtin_model().expression_bounds is None and blendshapes.expression_bounds is not None
    task = MoFA(image_size=SIZE, depths=(1,), width=8).eval()
    task.decoder.model = blendshapes
    code = sample_code(task.layout, 6, SynthOptions(expression=1.5), torch.Generator().manual_seed(5))
    with torch.no_grad():
        landmarks = task.decoder(code).landmarks  # faces with expression weights far outside [0, 1]
    landmark_model = LandmarkModel(task.decoder, task.layout.shape, task.layout.expression)
    stage = LandmarkStage(iterations=10, rounds=2, shape_prior=1e-3, expression_prior=1e-3)
    start = code._replace(
        shape=torch.zeros_like(code.shape), expression=torch.full_like(code.expression, 3.0)
    )
    fitted, results = fit_landmarks(landmark_model, start, landmarks, torch.ones(6, 68), SIZE, stage)
    high = 1.0 / blendshapes.expression_std
    assert fitted.expression.min() >= 0 and (fitted.expression <= high).all()
    assert (fitted.expression == 0).any() and (results[-1].cost[-1] < results[0].cost[0]).all()
    assert torch.equal(
        blendshapes.clip_expression(torch.tensor([[-1.0, 0.5, 9.0]])),
        torch.tensor([[0.0, 0.5, float(high[2])]]),
    )


def test_bounded_levenberg_marquardt_reaches_the_constrained_minimum():
    """A quadratic whose free minimum (2, -3) lies outside the box [0, 1] x [-1, 1]: the solution is the box's
    nearest corner, as the active set holds each parameter at its bound."""
    target = torch.tensor([[2.0, -3.0]])
    problem = lambda params, jacobian: (  # noqa: E731
        params - target,
        torch.eye(2).expand(1, 2, 2) if jacobian else None,
    )
    bounds = (torch.tensor([0.0, -1.0]), torch.tensor([1.0, 1.0]))
    result = levenberg_marquardt(problem, torch.tensor([[0.5, 0.5]]), 10, bounds=bounds)
    torch.testing.assert_close(result.params, torch.tensor([[1.0, -1.0]]))


@pytest.mark.parametrize("size", [48, 96])
def test_the_levenberg_marquardt_cost_is_mofas_weighted_objective_for_the_same_code(size):
    """One objective: the photometric stage's least-squares cost (its photometric, landmark and prior residuals)
    equals MoFA's weighted loss of the same code for each face (``points`` term, squared colour distance,
    per-face mean), at any crop size (both measure landmarks in pixels at 224²)."""
    from facegen.fitting.levenberg import levenberg_marquardt as solve

    torch.manual_seed(0)
    model = MoFA(
        image_size=size, depths=(1,), width=8, norm="l2", photometric_average="image", landmark_jaw=0.3
    ).eval()
    batch = face_batch(torch.rand(2, 3, size, size), torch.rand(2, 68, 2) * (size - 1))
    batch = dataclasses.replace(batch, confidence=torch.rand(2, 68))  # per-point weights
    with torch.no_grad():
        code = model(batch.image)
    code = code._replace(
        shape=torch.randn_like(code.shape) * 0.3,
        expression=torch.randn_like(code.expression) * 0.3,
        albedo=torch.randn_like(code.albedo) * 0.3,
        light=code.light + 0.05 * torch.randn_like(code.light),
    )
    weights = LossWeights(photometric=1.0, landmark=0.02, shape=1e-3, expression=2e-3, albedo=3e-3, light=0.5)
    targets = model.targets(batch)
    problem = PhotometricProblem(PhotometricSetup(model.decoder, PARTS, model.region, weights), code, targets)
    cost = solve(problem, problem.params(), 0).cost[0]
    for i in range(2):
        one = FaceCode(*(part[i : i + 1] for part in code))
        objective = model.weighted_loss(targets.take([i]), one, weights)
        assert cost[i].item() == pytest.approx(objective.item(), rel=1e-4)


def test_random_blendshape_weights_lie_in_their_bounds_and_are_sparse():
    layout = MoFA(image_size=SIZE, depths=(1,), width=8).layout
    generator = torch.Generator().manual_seed(2)
    code = sample_code(layout, 64, SynthOptions(expression=1.5), generator, "blendshape")
    weights = code.expression
    assert weights.min() == 0 and weights.max() <= 1 and weights.max() > 0.9
    active = (weights > 0).float().mean()
    assert 0.15 < active < 0.35  # BLENDSHAPE_ACTIVE = 0.25
    pca = sample_code(layout, 64, SynthOptions(expression=1.5), torch.Generator().manual_seed(2)).expression
    assert pca.min() < -1 and pca.max() > 1


def test_landmark_vertices_move_to_where_the_detector_puts_the_points(model):
    from facegen.fitting.landmark_calibration import RECHOSEN, VertexChoice

    face_model = model.decoder.model
    indices = face_model.landmark_indices.clone()
    mean = face_model.mean
    # the "detector" puts the nose tip (30) and a mouth corner (48) on other vertices nearby
    nose_tip, corner = 30, 48
    moved = {}
    for k in (nose_tip, corner):
        near = torch.argsort((mean - mean[indices[k]]).norm(dim=-1))
        moved[k] = int(near[3])
    code, _ = faces(model, 5, seed=3)
    with torch.no_grad():
        pixels = model.decoder(code).pixels
    detected = pixels[:, indices].clone()
    for k, vertex in moved.items():
        detected[:, k] = pixels[:, vertex]
    radius = float((mean[moved[nose_tip]] - mean[indices[nose_tip]]).norm()) * 1.5
    choice = VertexChoice(mean, indices, radius=max(radius, 1e-3))
    missing = detected.clone()
    missing[0, nose_tip] = float("nan")  # a point the detector did not give is not counted
    choice.add(pixels, missing, torch.ones(5, 68))
    chosen = choice.indices()
    assert int(chosen[nose_tip]) == moved[nose_tip] and int(chosen[corner]) == moved[corner]
    others = [k for k in RECHOSEN if k not in moved]
    assert torch.equal(chosen[others], indices[others]) and torch.equal(chosen[:17], indices[:17])
    assert choice.mean_distance(chosen) == 0 < choice.mean_distance(indices)
    # a point the detector is not confident about does not move its vertex
    unsure = VertexChoice(mean, indices, radius=max(radius, 1e-3))
    confidence = torch.ones(5, 68)
    confidence[:, nose_tip] = 0
    unsure.add(pixels, detected, confidence)
    assert int(unsure.indices()[nose_tip]) == int(indices[nose_tip])
    assert int(unsure.indices()[corner]) == moved[corner]


def test_the_calibration_script_writes_indices_the_converter_reads(tmp_path, monkeypatch, capsys):
    """benchmarks/calibrate_landmarks.py end to end on rendered faces whose landmark files are the built-in
    model's exact points: the chosen vertices sit no further from the points than the model's own, and the file
    is one ``facegen model convert --landmarks`` reads."""
    import json
    from pathlib import Path

    from facegen.commands.synthetic_benchmark import SyntheticSettings, render_benchmark
    from facegen.morphable.builtin import builtin_model
    from facegen.morphable.formats.common import read_landmark_indices

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    from calibrate_landmarks import main

    render_benchmark(builtin_model(), 112, SyntheticSettings(n=3), tmp_path / "photos")
    out = tmp_path / "landmarks.txt"
    config = Path(__file__).parents[1] / "configs" / "mofa.yaml"
    argv = ["--config", str(config), "--photos", str(tmp_path / "photos"), "--detector", "files"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["faces"] == 3 and report["distance_after"] <= report["distance_before"] < 0.05
    indices = read_landmark_indices(out, builtin_model().num_vertices)
    assert out.read_text().startswith("# facegen landmark vertices of facegen-builtin")
    assert torch.equal(torch.as_tensor(indices[:17]), builtin_model().landmark_indices[:17].long())


def test_slid_jaw_points_take_the_outline_vertex_nearest_to_their_detection(model):
    """A turned face's cheek landmarks on the side turned away go to the outline vertex nearest their detected
    point (here: the outline one slice above their own height); a missing detection keeps its own height."""
    code = model.layout.zeros(1)._replace(rotation=torch.tensor([[0.0, math.radians(45), 0.0]]))
    landmark_model = LandmarkModel(model.decoder, model.layout.shape, model.layout.expression)
    own_height = landmark_model.silhouette(code)
    candidates, side, own = landmark_model.outline
    with torch.no_grad():
        pixels = model.decoder(code).pixels[0]  # (V, 2)
    slid = [j for j, k in enumerate(SLIDING) if own_height[0, k] != landmark_model.landmark_indices[k]]
    assert len(slid) >= 3
    detected = pixels[landmark_model.landmark_indices].clone()[None]  # (1, 68, 2)
    expected = own_height.clone()
    for j in slid:
        row = candidates[int(own[j]) + 1]
        row = row[row >= 0]
        k = SLIDING[j]  # outward: from the hidden jaw vertex towards its outline vertex
        direction = torch.sign(pixels[own_height[0, k], 0] - pixels[landmark_model.landmark_indices[k], 0])
        vertex = row[(pixels[row, 0] * direction).argmax()]  # the outermost vertex of the slice above
        detected[0, SLIDING[j]] = pixels[vertex] + 0.3  # a detection near it
        expected[0, SLIDING[j]] = vertex
    assert torch.equal(landmark_model.silhouette(code, detected), expected)
    missing = detected.clone()
    missing[0, SLIDING[slid[0]]] = float("nan")
    expected[0, SLIDING[slid[0]]] = own_height[0, SLIDING[slid[0]]]
    assert torch.equal(landmark_model.silhouette(code, missing), expected)
    # the side facing the camera and the rest of the face keep their vertices whatever was detected
    facing = [k for k in range(68) if k not in [SLIDING[j] for j in slid]]
    assert torch.equal(
        landmark_model.silhouette(code, detected)[0, facing], landmark_model.landmark_indices[facing]
    )
