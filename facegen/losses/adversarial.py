"""Adversarial losses of StyleGAN2: the non-saturating logistic loss, lazy R1 regularisation of the
discriminator on real data, and path-length regularisation of the generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: mean of softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic discriminator loss: mean softplus(D(fake)) + mean softplus(-D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """Mean over the batch of the squared gradient norm of D at real inputs (``real_inputs`` must require grad);
    differentiable (create_graph), so it trains D. Multiply by gamma / 2 and, when lazy, by the interval."""
    (gradient,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return gradient.pow(2).flatten(1).sum(1).mean()


def path_length_penalty(images: Tensor, ws: Tensor, mean_length: Tensor) -> tuple[Tensor, Tensor]:
    """StyleGAN2's path-length regulariser: the Jacobian norm |J_w^T y| for random image-space directions y
    should stay constant. Returns the penalty (mean squared deviation from ``mean_length``) and the lengths'
    batch mean (to update ``mean_length`` as a running average)."""
    noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (gradient,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    lengths = gradient.pow(2).sum(2).mean(1).sqrt()
    return (lengths - mean_length).pow(2).mean(), lengths.detach().mean()
