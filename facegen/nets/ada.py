"""Adaptive discriminator augmentation (Karras et al., "Training Generative Adversarial Networks with Limited
Data", NeurIPS 2020), with Kornia: every image shown to the discriminator, real or generated, is augmented with
probability ``p`` per transform; ``p`` rises when the discriminator overfits (the mean sign of its outputs on
real images exceeds ``target``) and falls otherwise. Differentiable, so generator gradients pass through."""

from __future__ import annotations

import math

import kornia
import torch
from torch import Tensor, nn


class AdaptiveAugment(nn.Module):
    """Flip, integer-free translation, isotropic scale, rotation, brightness, contrast and saturation.

    Args:
        target: the overfitting heuristic r_t = E[sign(D(real))] that ``p`` steers towards.
        speed_images: images after which ``p`` can go from 0 to 1.
        interval: discriminator steps between adjustments.
        initial_p: starting probability; ``adaptive=False`` keeps ``p`` fixed.
    """

    def __init__(
        self,
        target: float = 0.6,
        speed_images: int = 100_000,
        interval: int = 4,
        initial_p: float = 0.0,
        adaptive: bool = True,
    ) -> None:
        super().__init__()
        self.target, self.speed_images, self.interval, self.adaptive = (
            target,
            speed_images,
            interval,
            adaptive,
        )
        self.register_buffer("p", torch.tensor(float(initial_p)))
        self.register_buffer("sign_sum", torch.zeros(()))
        self.register_buffer("count", torch.zeros(()))

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, C, H, W) -> augmented images; the first three channels are colour, further ones (masks) are
        only moved geometrically."""
        p = float(self.p)
        if p <= 0:
            return images
        batch, device = images.shape[0], images.device

        def chosen() -> Tensor:
            return torch.rand(batch, generator=generator, device=device) < p

        def uniform(low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(batch, generator=generator, device=device)

        flip = chosen()
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        angle = torch.where(chosen(), uniform(-math.pi, math.pi) * 0.1, 0.0)
        scale = torch.where(chosen(), torch.exp2(uniform(-0.2, 0.2)), 1.0)
        shift = torch.where(
            chosen().view(-1, 1), (torch.rand(batch, 2, generator=generator, device=device) - 0.5) * 0.25, 0.0
        )
        height, width = images.shape[-2:]
        centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=device).expand(batch, 2)
        matrix = kornia.geometry.transform.get_rotation_matrix2d(
            centre, torch.rad2deg(angle), scale.unsqueeze(1).expand(batch, 2)
        )
        matrix[:, :, 2] += shift * torch.tensor([width, height], device=device)
        images = kornia.geometry.transform.warp_affine(
            images, matrix.to(images.dtype), (height, width), padding_mode="reflection"
        )
        colour, rest = images[:, :3], images[:, 3:]
        brightness = torch.where(chosen(), uniform(-0.2, 0.2), 0.0).view(-1, 1, 1, 1)
        contrast = torch.where(chosen(), torch.exp2(uniform(-0.5, 0.5)), 1.0).view(-1, 1, 1, 1)
        saturation = torch.where(chosen(), torch.exp2(uniform(-1.0, 1.0)), 1.0).view(-1, 1, 1, 1)
        mean = colour.mean((1, 2, 3), keepdim=True)
        colour = (colour - mean) * contrast + mean + brightness
        grey = colour.mean(1, keepdim=True)
        colour = grey + (colour - grey) * saturation
        return torch.cat([colour, rest], 1)

    @torch.no_grad()
    def update(self, real_logits: Tensor) -> None:
        """Accumulate sign(D(real)); every ``interval`` calls move ``p`` towards keeping r_t at ``target``."""
        if not self.adaptive:
            return
        self.sign_sum += real_logits.sign().sum()
        self.count += real_logits.numel()
        if self.count >= self.interval * real_logits.numel():
            r_t = self.sign_sum / self.count
            step = self.count / self.speed_images
            self.p.copy_((self.p + torch.sign(r_t - self.target) * step).clamp(0.0, 1.0))
            self.sign_sum.zero_()
            self.count.zero_()
