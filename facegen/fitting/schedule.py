"""The fitting schedule (:class:`FitSchedule`): what follows the encoder in ``facegen predict``, ``val/fitted_*``,
video tracks and texture reconstruction, stage by stage, with each stage's settings. A stage with no iterations
is skipped; the default schedule fits nothing. :func:`facegen.fitting.run.fit` carries a schedule out.

1. :class:`PoseStage`: the rigid pose from the 68 landmarks (closed form, then Levenberg-Marquardt);
2. :class:`LandmarkStage`: pose, identity and expression on the landmarks (Levenberg-Marquardt with priors,
   :mod:`facegen.fitting.landmark_fit`);
3. :class:`PhotometricStage`: chosen code parts on MoFA's whole objective (Adam, or Levenberg-Marquardt on its
   ``points`` term: :mod:`facegen.fitting.photometric_fit`).

The shipped schedules are presets in ``configs/fit/`` that configs name (``fit: fit/standard.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from facegen.decoder.code import PARTS
from facegen.errors import ConfigError, check_choice
from facegen.losses.weights import LossWeights

#: How the jaw contour landmarks correspond to the model (see the module docstring).
Contour = Literal["fixed", "sliding"]
#: How the prior weights of the landmark stage are chosen (see :class:`LandmarkStage`).
Priors = Literal["fixed", "estimated"]
#: Where the pose stage starts (see :class:`PoseStage`).
Starts = Literal["single", "multi"]


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
                f"fit.pose.iterations and fit.pose.robust must be >= 0, got {self.iterations}, {self.robust}"
            )
        if self.starts not in ("single", "multi"):
            raise ConfigError(f"fit.pose.starts must be 'single' or 'multi', got {self.starts!r}")

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
                "fit.landmarks: iterations >= 0, rounds >= 1, priors >= 0, dense >= 0 and robust >= 0, got "
                f"iterations={self.iterations}, rounds={self.rounds}, shape_prior={self.shape_prior}, "
                f"expression_prior={self.expression_prior}, dense={self.dense}, min_prior={self.min_prior}, "
                f"robust={self.robust}"
            )
        if self.contour not in ("fixed", "sliding"):
            raise ConfigError(f"fit.landmarks.contour must be 'fixed' or 'sliding', got {self.contour!r}")
        if self.priors not in ("fixed", "estimated"):
            raise ConfigError(f"fit.landmarks.priors must be 'fixed' or 'estimated', got {self.priors!r}")
        if self.robust > 0 and self.rounds < 2:
            raise ConfigError(
                f"fit.landmarks.robust: robust weights are set from a round's residuals for the next: give "
                f"rounds >= 2 (got {self.rounds})"
            )
        if self.priors == "estimated" and (self.rounds < 2 or self.shape_prior <= 0):
            raise ConfigError(
                "fit.landmarks.priors: estimated priors are set after a first round with shape_prior > 0: "
                f"give rounds >= 2 (got {self.rounds}) and shape_prior > 0 (got {self.shape_prior})"
            )

    @property
    def active(self) -> bool:
        return self.iterations > 0


#: How the photometric stage descends (see :class:`PhotometricStage`).
Solver = Literal["adam", "levenberg"]


@dataclass
class PhotometricStage:
    """Stage 3: the code ``parts`` (the others stay) fitted to MoFA's whole objective (photometric + landmarks +
    priors) with loss ``weights`` (default: the model's training weights). Weaker priors and a stronger
    landmark term than in training suit fitting: the landmark stages have placed the face, so the data can
    decide the fine shape.

    ``solver``: ``adam``, ``steps`` of Adam at ``lr``, each one decode, render and loss evaluation of the batch
    (any photometric mode and norm); ``levenberg``, ``steps`` iterations of Levenberg-Marquardt on the same
    objective as least squares (:mod:`facegen.fitting.photometric_fit`: the ``points`` photometric term with
    the squared colour distance averaged per face; ``lr`` is not used), which reaches in 2-3 iterations what
    Adam does not in hundreds of steps when shape and expression move."""

    steps: int = 0
    lr: float = 0.02
    parts: tuple[str, ...] = PARTS
    weights: LossWeights | None = None
    solver: Solver = "adam"

    def __post_init__(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown or self.steps < 0 or self.lr <= 0:
            raise ConfigError(
                f"fit.photometric: steps must be >= 0, lr > 0 and parts among {PARTS}; got "
                f"steps={self.steps}, lr={self.lr}, unknown parts {sorted(unknown)}"
            )
        check_choice("fit.photometric.solver", self.solver, Solver)

    @property
    def geometry_fixed(self) -> bool:
        """True when the stage moves only reflectance and light (the geometry is decoded once)."""
        return set(self.parts) <= {"albedo", "light"}


@dataclass
class FitSchedule:
    """The fitting schedule that follows the encoder (or starts from the mean face): stage 1 rigid pose from
    the landmarks, stage 2 pose + identity + expression on the landmarks, stage 3 the photometric objective
    (module docstring). A stage with no iterations is skipped; all off (the default): no fitting."""

    pose: PoseStage = field(default_factory=PoseStage)
    landmarks: LandmarkStage = field(default_factory=LandmarkStage)
    photometric: PhotometricStage = field(default_factory=PhotometricStage)

    @property
    def active(self) -> bool:
        return self.pose.active or self.landmarks.active or self.photometric.steps > 0


def check_solver(schedule: FitSchedule, photometric: str) -> None:
    """Raise :class:`ConfigError` when ``schedule`` asks Levenberg-Marquardt of a model whose photometric term
    (``model.photometric``) is not ``points``, the term it fits."""
    if schedule.photometric.steps and schedule.photometric.solver == "levenberg" and photometric != "points":
        raise ConfigError(
            "model.fit.photometric.solver: levenberg fits the points photometric term; set "
            f"model.photometric: points (got {photometric!r}) or solver: adam"
        )
