"""LightningModules: MoFA (the model-based face autoencoder)."""

from facegen.tasks.mofa import LossWeights, MoFA
from facegen.tasks.refine import RefineOptions, refine_code

__all__ = ["LossWeights", "MoFA", "RefineOptions", "refine_code"]
