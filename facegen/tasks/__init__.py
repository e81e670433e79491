"""LightningModules on a shared base (:class:`FaceTask`): MoFA (the model-based face autoencoder), TextureGAN (the
adversarial UV texture model, with its frozen MoFA conditioning, re-posing of 2D faces and latent fitting in their
own modules) and FaceStyleGAN (a 2D StyleGAN2 of face crops, the offline stand-in for FFHQ networks), the two GANs
on :class:`~facegen.tasks.adversarial.AdversarialTask`; and ImageGAN, a pretrained 2D StyleGAN2 generator that
``facegen predict`` runs on seeds."""

from facegen.tasks.adversarial import Regularization
from facegen.tasks.base import FaceTask
from facegen.tasks.conditioning import MoFASource
from facegen.tasks.face_stylegan import FaceStyleGAN
from facegen.tasks.image_gan import ImageGAN
from facegen.tasks.latent_fit import LatentFit
from facegen.tasks.mofa import LossWeights, MoFA
from facegen.tasks.reposing import PoseAugment
from facegen.tasks.texture_gan import TextureGAN

__all__ = [
    "FaceStyleGAN",
    "FaceTask",
    "ImageGAN",
    "LatentFit",
    "LossWeights",
    "MoFA",
    "MoFASource",
    "PoseAugment",
    "Regularization",
    "TextureGAN",
]
