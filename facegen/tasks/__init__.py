"""LightningModules on a shared base (:class:`FaceTask`): MoFA (the model-based face autoencoder) and TextureGAN (the
adversarial UV texture model, with its frozen MoFA conditioning and latent fitting in their own modules)."""

from facegen.tasks.base import FaceTask
from facegen.tasks.conditioning import MoFASource
from facegen.tasks.latent_fit import LatentFit
from facegen.tasks.mofa import LossWeights, MoFA
from facegen.tasks.refine import RefineOptions, refine_code
from facegen.tasks.texture_gan import Regularization, TextureGAN

__all__ = [
    "FaceTask",
    "LatentFit",
    "LossWeights",
    "MoFA",
    "MoFASource",
    "RefineOptions",
    "Regularization",
    "TextureGAN",
    "refine_code",
]
