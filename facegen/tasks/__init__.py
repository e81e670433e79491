"""LightningModules: MoFA (the model-based face autoencoder) and TextureGAN (the adversarial UV texture model)."""

from facegen.tasks.mofa import LossWeights, MoFA
from facegen.tasks.refine import RefineOptions, refine_code
from facegen.tasks.texture_gan import TextureGAN

__all__ = ["LossWeights", "MoFA", "RefineOptions", "refine_code", "TextureGAN"]
