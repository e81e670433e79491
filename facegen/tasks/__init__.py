"""LightningModules: MoFA (the model-based face autoencoder)."""

from facegen.tasks.mofa import LossWeights, MoFA

__all__ = ["LossWeights", "MoFA"]
