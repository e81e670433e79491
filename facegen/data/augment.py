"""Batch augmentation on the device with Kornia: colour jitter, a small random similarity transform and a
horizontal flip, with the 68 landmarks and the mask moved consistently (flips permute the landmarks with the
iBUG mirror permutation). Random draws come from a given ``torch.Generator`` so runs are reproducible."""

from __future__ import annotations

import math
from dataclasses import replace

import kornia
import torch
from torch import Tensor, nn

from facegen.data.batch import FaceBatch
from facegen.errors import ConfigError
from facegen.geometry.landmarks import MIRROR_PERMUTATION

#: RGB -> YIQ (NTSC): luma Y and the chroma plane (I, Q) that saturation scales and hue rotates.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


class FaceAugmentation(nn.Module):
    """Random augmentation of a :class:`FaceBatch` (image, landmarks and mask moved together).

    Args:
        flip: probability of a horizontal flip.
        rotate: largest rotation in degrees (uniform in +-rotate).
        scale: largest relative scale change (uniform in 1 +- scale).
        translate: largest shift as a fraction of the image size.
        brightness, contrast, saturation: largest relative change; hue: largest shift in turns (0.5 = 180 deg).
        colour_probability: probability of the colour jitter per sample.
    """

    def __init__(
        self,
        flip: float = 0.5,
        rotate: float = 8.0,
        scale: float = 0.05,
        translate: float = 0.03,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.02,
        colour_probability: float = 0.8,
    ) -> None:
        super().__init__()
        for name, value in dict(flip=flip, colour_probability=colour_probability).items():
            if not 0 <= value <= 1:
                raise ConfigError(f"augmentation {name} must be a probability in [0, 1], got {value}")
        self.flip, self.rotate, self.scale, self.translate = flip, rotate, scale, translate
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.colour_probability = colour_probability

    def matrices(
        self, batch: int, size: tuple[int, int], generator: torch.Generator, device
    ) -> tuple[Tensor, Tensor]:
        """(B, 3, 3) pixel-space transforms (flip, then similarity about the centre) and (B,) flip flags."""

        def uniform(limit: float) -> Tensor:
            return (torch.rand(batch, generator=generator, device=device) * 2 - 1) * limit

        height, width = size
        flipped = torch.rand(batch, generator=generator, device=device) < self.flip
        angle = uniform(math.radians(self.rotate))
        scale = 1 + uniform(self.scale)
        shift = torch.stack([uniform(self.translate) * width, uniform(self.translate) * height], -1)
        centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=device)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        matrix = torch.zeros(batch, 3, 3, device=device)
        matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = cos, -sin, sin, cos
        matrix[:, :2, 2] = centre + shift - (matrix[:, :2, :2] @ centre)
        matrix[:, 2, 2] = 1
        flip = torch.eye(3, device=device).repeat(batch, 1, 1)
        flip[flipped, 0, 0] = -1
        flip[flipped, 0, 2] = width - 1
        return matrix @ flip, flipped

    def colour(self, image: Tensor, generator: torch.Generator) -> Tensor:
        """Colour jitter as one per-sample affine colour map, applied in one pass and clamped to [0, 1]:
        brightness adds, contrast scales, saturation scales and hue rotates the chroma plane (I, Q) of YIQ
        around the luma axis (a luma-preserving hue rotation, as CSS's ``hue-rotate``; Kornia's HSV round trip
        cost ten times as much and was a fifth of a quickstart training step)."""
        batch = image.shape[0]

        def factor(limit: float) -> Tensor:
            return 1 + (torch.rand(batch, generator=generator, device=image.device) * 2 - 1) * limit

        apply = (torch.rand(batch, generator=generator, device=image.device) < self.colour_probability)[
            :, None, None, None
        ]
        brightness, contrast = factor(self.brightness) - 1, factor(self.contrast)
        saturation, angle = factor(self.saturation), (factor(self.hue) - 1) * 2 * math.pi
        to_yiq = _RGB_TO_YIQ.to(image.device, image.dtype)
        chroma = torch.zeros(batch, 3, 3, device=image.device, dtype=image.dtype)
        chroma[:, 0, 0] = 1
        chroma[:, 1, 1] = chroma[:, 2, 2] = saturation * torch.cos(angle)
        chroma[:, 2, 1] = saturation * torch.sin(angle)
        chroma[:, 1, 2] = -chroma[:, 2, 1]
        matrix = contrast[:, None, None] * (torch.linalg.inv(to_yiq) @ chroma @ to_yiq)  # (B, 3, 3)
        offset = matrix.sum(-1) * brightness[:, None]  # matrix @ (brightness, brightness, brightness)
        jittered = torch.einsum("bij,bjhw->bihw", matrix, image) + offset[:, :, None, None]
        return torch.where(apply, jittered.clamp(0, 1), image)

    def forward(self, batch: FaceBatch, generator: torch.Generator) -> FaceBatch:
        """The augmented batch (a new one); ground-truth ``params`` are dropped since they no longer hold."""
        image = batch.image
        size = tuple(image.shape[-2:])
        matrix, flipped = self.matrices(image.shape[0], size, generator, image.device)
        affine = matrix[:, :2].to(image.dtype)
        warp = dict(dsize=size, align_corners=True, padding_mode="reflection")
        landmarks = batch.landmarks @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]
        permutation = torch.as_tensor(MIRROR_PERMUTATION, device=image.device)
        landmarks = torch.where(flipped[:, None, None], landmarks[:, permutation], landmarks)
        confidence = batch.confidence
        if confidence is not None:
            confidence = torch.where(flipped[:, None], confidence[:, permutation], confidence)
        warped = kornia.geometry.transform.warp_affine(image, affine, **warp)
        mask = kornia.geometry.transform.warp_affine(batch.mask, affine, dsize=size, align_corners=True)
        return replace(
            batch,
            image=self.colour(warped, generator),
            mask=mask,
            landmarks=landmarks,
            confidence=confidence,
            params=None,
            dense_landmarks=None,  # not moved with the image (no mirror order for a dense scheme)
        )
