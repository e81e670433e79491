"""The fitting engine: closed-form pose, batched Levenberg-Marquardt, identity + expression on landmarks, and the
photometric stage by Levenberg-Marquardt (:mod:`facegen.fitting.photometric_fit`; its Adam variant runs MoFA's own
objective: :mod:`facegen.tasks.refine`)."""

from facegen.fitting.landmark_fit import (
    Contour,
    LandmarkModel,
    LandmarkStage,
    PoseStage,
    fit_landmarks,
    fit_pose,
)
from facegen.fitting.levenberg import SolveResult, levenberg_marquardt
from facegen.fitting.pose import Pose, closed_form_pose, dlt_pose, weak_perspective_pose

__all__ = [
    "Contour",
    "LandmarkModel",
    "LandmarkStage",
    "Pose",
    "PoseStage",
    "SolveResult",
    "closed_form_pose",
    "dlt_pose",
    "fit_landmarks",
    "fit_pose",
    "levenberg_marquardt",
    "weak_perspective_pose",
]
