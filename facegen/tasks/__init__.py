"""LightningModules on a shared base (:class:`FaceTask`): MoFA (the model-based face autoencoder) and TextureGAN (the
adversarial UV texture model, with its frozen MoFA conditioning and latent fitting in their own modules); and
ImageGAN, a pretrained 2D StyleGAN2 generator that ``facegen predict`` runs on seeds."""

from facegen.tasks.base import FaceTask
from facegen.tasks.conditioning import MoFASource
from facegen.tasks.image_gan import ImageGAN
from facegen.tasks.latent_fit import LatentFit
from facegen.tasks.mofa import LossWeights, MoFA
from facegen.tasks.refine import Fitted, PhotometricStage, RefineOptions, refine_code
from facegen.tasks.texture_gan import Regularization, TextureGAN

__all__ = [
    "FaceTask",
    "ImageGAN",
    "LatentFit",
    "LossWeights",
    "MoFA",
    "MoFASource",
    "Fitted",
    "PhotometricStage",
    "RefineOptions",
    "Regularization",
    "TextureGAN",
    "refine_code",
]
