"""MoFA (Tewari et al., ICCV 2017) as a LightningModule: a CNN encoder regresses the semantic face code, the
analytic decoder (morphable model + camera + SH shading + rendering) reconstructs the image, and photometric,
landmark and statistical terms train the encoder without labels.

Why one module over 400 lines: the LightningModule's hooks share the encoder, the decoder and the objective; the fit
(facegen.fitting), video tracks and metrics' scores live elsewhere."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from facegen.callbacks.face_exporter import FaceExporter
from facegen.data.batch import FaceBatch, InputSpec
from facegen.decoder import DecodedFace, FaceCode, FaceDecoder
from facegen.decoder.albedo import LearnedAlbedo
from facegen.errors import ConfigError, check_choice
from facegen.evaluation.geometry import vertex_error
from facegen.export.outputs import DEFAULT_OUTPUTS, RENDERED, Output
from facegen.fitting import FitProblem, FitSchedule, FitTargets, Fitted, LandmarkModel, fit
from facegen.fitting.plausibility import implausible_fits
from facegen.fitting.problem import HeldGeometry
from facegen.fitting.schedule import check_solver
from facegen.geometry.framing import DEFAULT_FILL, DEFAULT_FOV
from facegen.geometry.precision import float32
from facegen.geometry.rotations import euler_to_matrix, rotation_angle_between
from facegen.geometry.sh import ambient_sh, sh_basis, shade
from facegen.losses import (
    LossWeights,
    coefficient_prior,
    landmark_error,
    landmark_loss,
    light_prior,
    masked_mean,
    photometric_loss,
    ssim_loss,
)
from facegen.losses import landmark_weights as make_landmark_weights
from facegen.losses.photometric import Average, Norm
from facegen.morphable.registry import load_face_model
from facegen.nets.encoder import CodeRegressor, build_backbone
from facegen.nets.weights import load_backbone_weights
from facegen.predictions import Reconstruction
from facegen.render.points import sample_image_at_points, visible_points
from facegen.render.settings import Backend, RasterSettings
from facegen.tasks.base import FaceTask, Schedule
from facegen.tasks.video import VideoOptions, VideoTracks

#: Where the albedo comes from (see :class:`MoFA`).
Reflectance = Literal["auto", "model", "learned"]
#: What the photometric term compares (see :class:`MoFA`).
Photometric = Literal["points", "raster"]
#: What a NaN or infinite loss does (see :class:`MoFA`).
OnNonfinite = Literal["stop", "skip"]


class MoFA(FaceTask):
    """The model-based face autoencoder.

    Args:
        face_model: ``builtin`` or a canonical face model ``.npz``.
        image_size: side of the square input crops in pixels.
        backbone, depths, width, grid, stem_pool: the encoder (``resnet`` with blocks per stage, first-stage
            channels, the side of its final pooling grid and whether its stem max-pools, or ``timm:<name>``).
        encoder_weights: a state dict to start the backbone from (facegen's, a torchvision-format ImageNet
            ResNet for ``resnet``, or a timm model's); what was loaded is reported in one line.
        pretrained: start a ``timm:`` backbone from timm's pretrained weights (its cache; fetched when online).
        shape, expression, albedo: largest code sizes (MoFA: 80, 64, 80), capped by the face model.
        reflectance: ``model`` (the face model's albedo basis), ``learned`` (a low-rank basis learned with the
            encoder, for models without albedo such as ICT and FLAME) or ``auto`` (model when it has one).
        albedo_rank: size of the learned albedo basis.
        photometric: ``points`` (MoFA: the image sampled at the visible projected vertices) or ``raster``
            (rendered image against the photo, per pixel).
        norm: colour distance of the photometric term (``l21``, ``l2``, ``l1``, ``charbonnier``).
        photometric_average: ``batch`` (one mean over all faces' visible points or pixels) or ``image`` (each
            face's own mean, then their average, as MoFA normalises per image).
        weights: loss weights; landmark_jaw / landmark_weights: per-landmark weights (68 values override).
        lr, weight_decay: Adam(W) settings.
        lr_schedule: ``constant`` or ``cosine`` (decays to 0 over the run's optimizer steps), after a linear
            warm-up of ``warmup_steps``.
        on_nonfinite: ``stop`` raises naming the step and loss term; ``skip`` skips the batch (single device).
        fov, fill: the camera's field of view (degrees) and default framing, as in the data.
        backend: renderer backend (``torch``, ``pytorch3d``, ``auto``).
        fit: the fitting schedule after the encoder (``predict``, ``val/fitted_*``, texture reconstruction):
            closed-form + Levenberg-Marquardt pose, Levenberg-Marquardt identity and expression on the landmarks,
            then Adam or Levenberg-Marquardt on MoFA's objective with ``fit.photometric.weights``
            (:class:`~facegen.fitting.FitSchedule`; Levenberg-Marquardt needs ``photometric: points``); with an
            untrained encoder this is pure fitting from the mean face. A preset file names a shipped schedule
            (``fit: fit/standard.yaml`` in a config of ``configs/``).
        validate_fitted: fit the first ``validate_fitted`` validation batches (per device) with ``fit`` and log
            their metrics as ``val/fitted_<metric>``: the accuracy of encoder + fit, beside the encoder's own
            over the whole validation set; 0 (or no fitting stage) turns it off. Lightning's sanity check (whose
            metrics are not logged) does not fit.
        video: how ``predict`` ties the faces of a video's frames together: one identity per video, pose,
            expression and light smoothed in time (:class:`~facegen.tasks.video.VideoOptions`).
        refine, validate_refined: the former names of ``fit`` and ``validate_fitted``, accepted with a warning
            for one release.
    """

    def __init__(
        self,
        face_model: str = "builtin",
        image_size: int = 224,
        backbone: str = "resnet",
        depths: tuple[int, ...] = (2, 2, 2, 2),
        width: int = 64,
        grid: int = 1,
        stem_pool: bool = True,
        encoder_weights: str | None = None,
        pretrained: bool = False,
        shape: int = 80,
        expression: int = 64,
        albedo: int = 80,
        reflectance: Reflectance = "auto",
        albedo_rank: int = 10,
        photometric: Photometric = "points",
        norm: Norm = "l21",
        photometric_average: Average = "batch",
        weights: LossWeights | None = None,
        landmark_jaw: float = 0.5,
        landmark_weights: list[float] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        lr_schedule: Schedule = "constant",
        warmup_steps: int = 0,
        on_nonfinite: OnNonfinite = "stop",
        fov: float = DEFAULT_FOV,
        fill: float = DEFAULT_FILL,
        backend: Backend = "torch",
        fit: FitSchedule | None = None,
        validate_fitted: int = 0,
        video: VideoOptions | None = None,
        refine: FitSchedule | None | Literal[False] = False,
        validate_refined: int | None = None,
    ) -> None:
        super().__init__()
        # fitting settings are run-time choices, not part of the trained model: kept out of checkpoints so that
        # the config of `facegen predict/validate --ckpt_path` decides them; the encoder's initial weights too
        # (a checkpoint holds the trained ones, and must load where the initial file is absent)
        self.save_hyperparameters(ignore=[*RUN_TIME_SETTINGS, "encoder_weights", "pretrained"])
        if refine is not False:  # the former name given, also as null (no fit)
            fit = _renamed("refine", refine, "fit", fit)
        if validate_refined is not None:
            validate_fitted = _renamed(
                "validate_refined", validate_refined, "validate_fitted", validate_fitted
            )
        if image_size < 16:
            raise ConfigError(f"model.image_size must be at least 16 pixels, got {image_size}")
        choices = {
            "reflectance": (reflectance, Reflectance),
            "norm": (norm, Norm),
            "lr_schedule": (lr_schedule, Schedule),
            "photometric": (photometric, Photometric),
            "on_nonfinite": (on_nonfinite, OnNonfinite),
            "photometric_average": (photometric_average, Average),
        }
        for setting, (value, allowed) in choices.items():
            check_choice(f"model.{setting}", value, allowed)
        if validate_fitted < 0:
            raise ConfigError(
                f"model.validate_fitted is a number of validation batches (>= 0), got {validate_fitted}"
            )
        self.weights = weights or LossWeights()
        self.fit_schedule = fit or FitSchedule()
        self.validate_fitted = validate_fitted
        self.videos = VideoTracks(video or VideoOptions())
        self._render_predictions = True  # what predict's writer needs (see prediction_writer)
        model = load_face_model(face_model)
        if self.fit_schedule.landmarks.dense > 0 and model.dense_scheme is None:
            raise ConfigError(
                f"model.fit.landmarks.dense: face model {face_model!r} has no dense landmarks; add them with "
                f"`facegen model convert npz --source {face_model} --out DENSE.npz --dense-landmarks mediapipe` "
                "and use DENSE.npz, or set dense: 0"
            )
        check_solver(self.fit_schedule, photometric)
        learned = self._reflectance(model, reflectance)
        albedo_module = LearnedAlbedo(model.num_vertices, model.faces, albedo_rank) if learned else None
        raster = RasterSettings(backend=backend)
        self.decoder = FaceDecoder(model, (image_size, image_size), fov, fill, albedo_module, raster)
        self.layout = self.decoder.layout(shape=shape, expression=expression, albedo=albedo)
        initial = self.layout.zeros(1)._replace(light=ambient_sh(1)).flatten()[0]
        encoder = build_backbone(backbone, depths, width, grid, pretrained, stem_pool)
        if encoder_weights is not None:
            rank_zero_info(
                load_backbone_weights(encoder, encoder_weights, depths if backbone == "resnet" else None)
            )
        self.encoder = CodeRegressor(encoder, initial)
        self.register_buffer(
            "landmark_weights", make_landmark_weights(landmark_jaw, 1.0, landmark_weights), persistent=False
        )
        region = (
            model.mask("face")
            if "face" in model.mask_names
            else torch.ones(model.num_vertices, dtype=torch.bool)
        )
        self.register_buffer("region", region, persistent=False)

    @staticmethod
    def _reflectance(model, reflectance: Reflectance) -> bool:
        """True when the albedo is learned; rejects a config asking for a basis the model lacks."""
        if reflectance == "model" and not model.has_albedo:
            raise ConfigError(
                f"model.reflectance is 'model' but face model {model.name!r} has no albedo basis: "
                "use reflectance: learned (or auto)"
            )
        return reflectance == "learned" or (reflectance == "auto" and not model.has_albedo)

    # ------------------------------------------------------------------------------------ forward
    def forward(self, image: Tensor) -> FaceCode:
        """(B, 3, S, S) in [0, 1] -> the face code."""
        return self.layout.split(self.encoder(image))

    def targets(self, batch: FaceBatch) -> FitTargets:
        """What MoFA explains of ``batch``: its crops, masks and landmarks, weighted by :meth:`point_weights`, and
        its dense landmarks (the objective's and the fit's input)."""
        return FitTargets(
            batch.image, batch.mask, batch.landmarks, self.point_weights(batch), batch.dense_landmarks
        )

    def loss_terms(
        self,
        targets: FitTargets,
        code: FaceCode,
        decoded: DecodedFace | None = None,
        weights: LossWeights | None = None,
        per_face: bool = False,
    ) -> dict[str, Tensor]:
        """Every unweighted loss term of MoFA for ``targets`` (:meth:`targets` of a batch) explained by ``code``
        (decoded here unless given); optional terms (SSIM) only when ``weights`` (default: the training ones)
        give them a weight. ``per_face``: each term of each face on its own, (B,) (the objective of a batch of
        that one face; the learned albedo's smoothness, a property of the model, stays a scalar). Computed in
        float32 even inside autocast (:mod:`facegen.geometry.precision`)."""
        with float32(targets.image.device):
            return self._loss_terms(targets, code.upcast(), decoded, weights, per_face)

    def _loss_terms(
        self,
        targets: FitTargets,
        code: FaceCode,
        decoded: DecodedFace | None,
        weights: LossWeights | None,
        per_face: bool,
    ) -> dict[str, Tensor]:
        image, mask = targets.image, targets.mask
        decoded = self.decoder(code) if decoded is None else decoded
        size = targets.size
        terms: dict[str, Tensor] = {}
        average = "face" if per_face else self.hparams.photometric_average
        if self.hparams.photometric == "points":
            observed, valid = self._observed_points(targets, decoded)
            colours = self.decoder.vertex_colours(decoded, code.light)
            terms["photometric"] = photometric_loss(colours, observed, valid, self.hparams.norm, average)
        else:
            rendered = self.decoder.render(decoded, code.light, background=image)
            valid = rendered.mask * (mask > 0.5)
            terms["photometric"] = photometric_loss(rendered.image, image, valid, self.hparams.norm, average)
            if (weights or self.weights).ssim > 0:
                terms["ssim"] = ssim_loss(
                    rendered.image, image, valid, average="face" if per_face else "batch"
                )
        terms["landmark"] = landmark_loss(
            decoded.landmarks, targets.landmarks, targets.weights, size, per_face=per_face
        )
        terms["shape"] = coefficient_prior(code.shape, per_face)
        terms["expression"] = coefficient_prior(code.expression, per_face)
        terms["light"] = light_prior(code.light, per_face)
        terms["albedo"] = coefficient_prior(code.albedo, per_face)
        if isinstance(self.decoder.albedo, LearnedAlbedo):
            terms["albedo_smoothness"] = self.decoder.albedo.smoothness()
        return terms

    def _observed_points(self, targets: FitTargets, decoded: DecodedFace) -> tuple[Tensor, Tensor]:
        """What the ``points`` photometric term compares the vertex colours with: the photos' colours at the
        projected vertices (B, V, 3), and which vertices count (B, V) bool: visible, in the model's region and on
        the face mask."""
        size = targets.size
        visible = visible_points(decoded.vertices, decoded.normals, decoded.pixels, (size, size))
        observed = sample_image_at_points(torch.cat([targets.image, targets.mask], 1), decoded.pixels)
        return observed[..., :3], visible & self.region & (observed[..., 3] > 0.5)

    def _total(self, terms: dict[str, Tensor], weights: LossWeights | None = None) -> Tensor:
        weights = asdict(weights or self.weights)
        return sum(weights[name] * value for name, value in terms.items())

    def _check_finite(self, terms: dict[str, Tensor]) -> bool:
        """True when every loss term is finite; otherwise stops or (``on_nonfinite: skip``) warns."""
        message = self.nonfinite(terms)
        if message is None:
            return True
        if self.hparams.on_nonfinite == "stop":
            raise FloatingPointError(message + " (set model.on_nonfinite: skip to skip such batches)")
        rank_zero_warn(message + ": batch skipped")
        return False

    # ------------------------------------------------------------------------------------ steps
    def training_step(self, batch: FaceBatch, batch_index: int) -> Tensor | None:
        code = self(batch.image)
        terms = self.loss_terms(self.targets(batch), code)
        if not self._check_finite(terms):
            return None
        loss = self._total(terms)
        size = len(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=size)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=size)
        skipped = getattr(self.trainer.datamodule, "skipped_samples", None)
        if skipped is not None:
            self.log("data/skipped_samples", float(skipped), batch_size=size)
        return loss

    def validation_step(self, batch: FaceBatch, batch_index: int) -> None:
        code = self(batch.image)
        metrics = self.evaluate(batch, code)
        sanity_check = self._trainer is not None and self._trainer.sanity_checking  # not logged: not fitted
        if batch_index < self.validate_fitted and self.fit_schedule.active and not sanity_check:
            fitted = self.fitted(batch, code).code
            metrics.update({f"fitted_{k}": v for k, v in self.evaluate(batch, fitted).items()})
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=len(batch), sync_dist=True)

    def test_step(self, batch: FaceBatch, batch_index: int) -> None:
        metrics = self.evaluate(batch)
        self.log_dict({f"test/{k}": v for k, v in metrics.items()}, batch_size=len(batch), sync_dist=True)

    @torch.no_grad()
    def evaluate(self, batch: FaceBatch, code: FaceCode | None = None) -> dict[str, Tensor]:
        """Validation metrics of ``code`` (default: the encoder's) for ``batch``: loss, photometric error (mean
        |render - photo| over the face, in [0, 1] units), landmark error (pixels, NME) and, with ground truth,
        vertex error in model units and mm, with the mean face's error as the baseline and their ratio, after
        similarity alignment (``vertex_error*``: monocular scale is ambiguous, as in the NoW benchmark) and
        after rigid alignment (``vertex_error_rigid*``), and code errors; in float32 even inside autocast."""
        code = (self(batch.image) if code is None else code).upcast()
        with float32(batch.image.device):
            return self._metrics(batch, code)

    def _metrics(self, batch: FaceBatch, code: FaceCode) -> dict[str, Tensor]:
        decoded = self.decoder(code)
        terms = self.loss_terms(self.targets(batch), code, decoded)
        metrics = {"loss": self._total(terms), "landmark_loss": terms["landmark"]}
        rendered = self.decoder.render(decoded, code.light, background=batch.image)
        valid = rendered.mask * (batch.mask > 0.5)
        metrics["photometric_error"] = masked_mean(
            (rendered.image - batch.image).abs().mean(1, keepdim=True), valid
        )
        pixels, nme = landmark_error(decoded.landmarks, batch.landmarks)
        metrics["landmark_error_px"], metrics["landmark_nme"] = pixels.mean(), nme.mean()
        if batch.params is not None:
            metrics.update(self._ground_truth_metrics(code, batch.params))
        return metrics

    def _ground_truth_metrics(self, code: FaceCode, params: dict[str, Tensor]) -> dict[str, Tensor]:
        model = self.decoder.model
        truth = model(shape=params["shape"], expression=params["expression"]).vertices
        predicted = model(shape=code.shape, expression=code.expression).vertices
        mean_face = model.mean.expand_as(truth)
        angle = rotation_angle_between(euler_to_matrix(code.rotation), euler_to_matrix(params["rotation"]))
        metrics = {"rotation_error_deg": angle.mean() * 180 / math.pi}
        for suffix, scale in (("", True), ("_rigid", False)):
            error = vertex_error(predicted, truth, self.region, scale).mean()
            baseline = vertex_error(mean_face, truth, self.region, scale).mean()
            metrics[f"vertex_error{suffix}"] = error
            metrics[f"vertex_error{suffix}_mm"] = error * model.mm_per_unit
            metrics[f"vertex_error{suffix}_mean_face"] = baseline
            metrics[f"vertex_error{suffix}_ratio"] = error / baseline.clamp(min=1e-12)
        for part in ("shape", "expression"):
            k = min(getattr(code, part).shape[1], params[part].shape[1])
            if k:
                metrics[f"{part}_rmse"] = (
                    (getattr(code, part)[:, :k] - params[part][:, :k]).pow(2).mean().sqrt()
                )
        return metrics

    @property
    def input_spec(self) -> InputSpec:
        hparams = self.hparams
        return InputSpec(hparams.image_size, hparams.face_model, hparams.fov, hparams.fill)

    def on_predict_start(self) -> None:
        self.videos.reset()

    def predict_step(self, batch: FaceBatch, batch_index: int) -> Reconstruction:
        """The reconstruction of ``batch``, fitted when ``fit`` has a stage; faces of video frames tied together in
        time (``video``); rendered unless the prediction writer writes nothing made from the render."""
        return self.reconstruct(batch, fit=True, video=True, render=self._render_predictions)

    @torch.no_grad()
    def reconstruct(
        self,
        batch: FaceBatch,
        fit: bool = False,
        geometry: bool = False,
        video: bool = False,
        render: bool = True,
    ) -> Reconstruction:
        """The encoder's code for ``batch`` (fitted by the ``fit`` schedule when asked and it has a stage),
        decoded into everything a writer or a picture needs; ``geometry``: also the grey shaded shape;
        ``video``: faces of video frames tied together in time (:attr:`videos`); ``render``: the faces rendered
        (else ``render`` is None)."""
        code = self(batch.image).upcast()
        history: list[float] = []
        face_loss = diverged = None
        if fit and self.fit_schedule.active and len(batch):
            targets = self.targets(batch)
            before = self.face_losses(targets, code)
            code, history, _, diverged = self.fitted(batch, code)
            if video:
                code = self.videos.apply(batch, code, self._refit_with_identity)
            face_loss = torch.stack([before, self.face_losses(targets, code)], 1)
        elif video and len(batch):
            code = self.videos.apply(batch, code, lambda faces, given: given)
        decoder = self.decoder
        code = code._replace(expression=decoder.model.clip_expression(code.expression))  # blendshapes: [0, 1]
        decoded = decoder(code)
        contour = LandmarkModel(decoder, code.shape.shape[1], code.expression.shape[1])
        landmarks_2d = contour.silhouette_landmarks(code, decoded.pixels, batch.landmarks)
        implausible = None
        if face_loss is not None and self.fit_schedule.landmarks.active:  # judged on the landmarks it fitted
            implausible = implausible_fits(
                batch.landmarks.to(landmarks_2d), landmarks_2d, code.rotation, batch.confidence
            )
        rotation, translation = decoder.camera_pose(code)
        grey = None
        if geometry:
            light = ambient_sh(len(batch), 0.6, batch.image.device) + _frontal_light(
                len(batch), batch.image.device
            )
            grey = decoder.render(decoded._replace(albedo=torch.full_like(decoded.albedo, 0.7)), light).image
        return Reconstruction(
            batch=batch,
            code=code,
            decoded=decoded,
            landmarks_2d=landmarks_2d,
            vertices_model=decoder.model(shape=code.shape, expression=code.expression).vertices,
            camera_rotation=rotation,
            camera_translation=translation,
            shaded=decoder.vertex_colours(decoded, code.light),
            render=decoder.render(decoded, code.light, background=0.0) if render else None,
            fit_loss=history,
            face_loss=face_loss,
            fit_diverged=diverged,
            fit_implausible=implausible,
            geometry=grey,
        )

    def prediction_writer(
        self, out: str, overwrite: bool, texture_size: int, outputs: Sequence[Output] = DEFAULT_OUTPUTS
    ) -> FaceExporter:
        """The callback that writes this model's predictions (``facegen predict --out``, ``--outputs``); its
        outputs decide whether :meth:`predict_step` renders the faces."""
        self._render_predictions = bool(RENDERED & set(outputs))
        return FaceExporter(out, self.decoder.model, overwrite, texture_size, outputs)

    def weighted_loss(
        self,
        targets: FitTargets,
        code: FaceCode,
        weights: LossWeights | None = None,
        decoded: DecodedFace | None = None,
    ) -> Tensor:
        """MoFA's objective for ``targets`` explained by ``code`` (scalar), with the training ``weights`` unless
        others are given; ``decoded``: ``code`` already decoded (decoded here when None)."""
        return self._total(self.loss_terms(targets, code, decoded, weights), weights)

    def face_losses(self, targets: FitTargets, code: FaceCode) -> Tensor:
        """(B,) the fit's objective (its loss weights) of each face of ``targets`` on its own, in one pass."""
        weights = self.fit_problem().weights
        return self._total(self.loss_terms(targets, code, weights=weights, per_face=True), weights)

    def point_weights(self, batch: FaceBatch) -> Tensor:
        """(B, 68) weight of each landmark of each face: the model's ``landmark_weights`` (jaw, or the 68 given)
        times the detector's confidence when the batch carries one."""
        weights = self.landmark_weights.expand(len(batch), -1)
        return weights if batch.confidence is None else weights * batch.confidence.to(weights)

    def fit_problem(self, schedule: FitSchedule | None = None) -> FitProblem:
        """MoFA as the fitting engine sees it: its decoder, photometric region and objective, with the loss
        weights of ``schedule``'s photometric stage, else of ``fit``'s, else the training ones."""
        given = schedule.photometric.weights if schedule is not None else None
        weights = given or self.fit_schedule.photometric.weights or self.weights

        def objective(targets: FitTargets, code: FaceCode, decoded: DecodedFace | None) -> Tensor:
            return self.weighted_loss(targets, code, weights, decoded)

        held = self._held_geometry(weights) if self.hparams.photometric == "points" else None
        return FitProblem(self.decoder, self.region, weights, objective, self.hparams.photometric, held)

    def _held_geometry(self, weights: LossWeights) -> HeldGeometry:
        """MoFA's ``points`` objective with ``weights`` and a code's geometry held
        (:data:`~facegen.fitting.problem.HeldGeometry`): the terms of :meth:`loss_terms` in the same order, those
        of the geometry computed once."""

        def build(targets: FitTargets, code: FaceCode):
            with torch.no_grad(), float32(targets.image.device):
                code = code.upcast()
                decoded = self.decoder(code)
                observed, valid = self._observed_points(targets, decoded)
                basis = sh_basis(decoded.normals)
                geometry_terms = {
                    "landmark": landmark_loss(
                        decoded.landmarks, targets.landmarks, targets.weights, targets.size
                    ),
                    "shape": coefficient_prior(code.shape),
                    "expression": coefficient_prior(code.expression),
                }
                smoothness = (
                    self.decoder.albedo.smoothness()
                    if isinstance(self.decoder.albedo, LearnedAlbedo)
                    else None
                )

            def objective(moving: FaceCode) -> Tensor:
                with float32(targets.image.device):
                    moving = moving.upcast()
                    colours = self.decoder.colours(moving) * shade(basis, moving.light)
                    terms = {
                        "photometric": photometric_loss(
                            colours,
                            observed,
                            valid,
                            self.hparams.norm,
                            self.hparams.photometric_average,
                        ),
                        **geometry_terms,
                        "light": light_prior(moving.light),
                        "albedo": coefficient_prior(moving.albedo),
                    }
                    if smoothness is not None:
                        terms["albedo_smoothness"] = smoothness
                    return self._total(terms, weights)

            return objective

        return build

    def fitted(self, batch: FaceBatch, code: FaceCode, schedule: FitSchedule | None = None) -> Fitted:
        """``code`` fitted to ``batch`` by ``schedule`` (default: ``fit``)."""
        schedule = schedule or self.fit_schedule
        return fit(self.fit_problem(schedule), self.targets(batch), code, schedule)

    def _refit_with_identity(self, batch: FaceBatch, code: FaceCode) -> FaceCode:
        """``code`` with pose and expression fitted again to ``batch``'s landmarks, its identity kept (the
        landmark stage of ``fit``; unchanged without one)."""
        if not self.fit_schedule.landmarks.active:
            return code
        schedule = FitSchedule(landmarks=self.fit_schedule.landmarks)
        return fit(self.fit_problem(schedule), self.targets(batch), code, schedule, fixed_identity=True).code

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        return self.warmup_schedule(optimizer, self.hparams.lr_schedule, self.hparams.warmup_steps)


def _frontal_light(batch: int, device) -> Tensor:
    """(B, 27) first-band SH light from the camera (normals facing it have z < 0), for the geometry view."""
    light = torch.zeros(batch, 3, 9, device=device)
    light[:, :, 2] = -0.45
    return light.reshape(batch, 27)


#: Settings of a run, not of the trained model: never saved with a checkpoint.
RUN_TIME_SETTINGS = ("fit", "validate_fitted", "video", "refine", "validate_refined")


def _renamed(old: str, old_value, new: str, new_value):
    """``old_value``, given under ``new``'s former name ``old``, with a one-line warning; a
    :class:`ConfigError` when ``new`` was given too (a value other than its default)."""
    if new_value not in (None, 0):
        raise ConfigError(f"model.{old} is the former name of model.{new}: give only model.{new}")
    rank_zero_warn(
        f"model.{old} is renamed model.{new}; the old name is accepted in this release only",
        category=FutureWarning,
    )
    return old_value
