"""Fitting: the schedule (:mod:`~facegen.fitting.schedule`), what it is given (:mod:`~facegen.fitting.problem`)
and how it runs (:mod:`~facegen.fitting.run`); the solvers behind the stages: closed-form pose, batched
Levenberg-Marquardt on the landmarks (:mod:`~facegen.fitting.landmark_fit`) and on the photometric term
(:mod:`~facegen.fitting.photometric_fit`), and the plausibility checks of a finished fit."""

from facegen.fitting.landmark_fit import fit_landmarks, fit_pose
from facegen.fitting.landmark_model import LandmarkModel
from facegen.fitting.levenberg import SolveResult, levenberg_marquardt
from facegen.fitting.pose import Pose, closed_form_pose, dlt_pose, weak_perspective_pose
from facegen.fitting.problem import FitProblem, FitTargets, clone_out_of_inference
from facegen.fitting.run import Fitted, fit
from facegen.fitting.schedule import Contour, FitSchedule, LandmarkStage, PhotometricStage, PoseStage

__all__ = [
    "Contour",
    "FitProblem",
    "FitSchedule",
    "FitTargets",
    "Fitted",
    "LandmarkModel",
    "LandmarkStage",
    "PhotometricStage",
    "Pose",
    "PoseStage",
    "SolveResult",
    "clone_out_of_inference",
    "closed_form_pose",
    "dlt_pose",
    "fit",
    "fit_landmarks",
    "fit_pose",
    "levenberg_marquardt",
    "weak_perspective_pose",
]
