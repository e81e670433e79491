"""Losses shared by MoFA and the texture model: photometric (Kornia-based), landmarks, statistical priors."""

from facegen.losses.landmark import landmark_error, landmark_loss, landmark_weights
from facegen.losses.photometric import colour_distance, masked_mean, photometric_loss, ssim_loss
from facegen.losses.regularizers import coefficient_prior, light_prior
from facegen.losses.weights import LossWeights

__all__ = [
    "LossWeights",
    "coefficient_prior",
    "colour_distance",
    "landmark_error",
    "landmark_loss",
    "landmark_weights",
    "light_prior",
    "masked_mean",
    "photometric_loss",
    "ssim_loss",
]
