"""Pictures of a batch for logging: input | render | overlay | landmarks (target green, predicted red) |
shaded geometry, as uint8 arrays (W&B writes float images in [0, 1] as black PNGs)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from facegen.geometry.sh import ambient_sh


def to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def draw_landmarks(
    image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], radius: int | None = None
) -> np.ndarray:
    """Filled dots of ``radius`` pixels (default: 1 per 128 rows of ``image``) at (N, 2) ``points``."""
    radius = radius or max(1, image.shape[0] // 128)
    for x, y in np.asarray(points):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, colour, -1, lineType=cv2.LINE_AA)
    return image


@torch.no_grad()
def reconstruction_panels(module, batch: dict, max_images: int = 4) -> np.ndarray:
    """(rows * H, 5 * W, 3) uint8: one row per face of ``batch`` explained by MoFA ``module``."""
    count = min(max_images, batch["image"].shape[0])
    image = batch["image"][:count]
    code = module(image)
    decoded = module.decoder(code)
    render = module.decoder.render(decoded, code.light, background=0.0)
    grey = decoded._replace(albedo=torch.full_like(decoded.albedo, 0.7))
    geometry = module.decoder.render(
        grey, ambient_sh(count, 0.6, image.device) + _frontal_light(count, image.device)
    )
    rows = []
    for i in range(count):
        photo, rendered = to_uint8(image[i]), to_uint8(render.image[i])
        mask = render.mask[i, 0].cpu().numpy()[..., None]
        overlay = (photo * (1 - 0.8 * mask) + rendered * 0.8 * mask).astype(np.uint8)
        marks = draw_landmarks(photo.copy(), batch["landmarks"][i].cpu().numpy(), (0, 220, 0))
        marks = draw_landmarks(marks, decoded.landmarks[i].cpu().numpy(), (230, 0, 0))
        rows.append(np.concatenate([photo, rendered, overlay, marks, to_uint8(geometry.image[i])], 1))
    return np.concatenate(rows, 0)


def _frontal_light(batch: int, device) -> Tensor:
    """First-band SH light from the camera (normals facing it have z < 0) for the geometry view."""
    light = torch.zeros(batch, 3, 9, device=device)
    light[:, :, 2] = -0.45
    return light.reshape(batch, 27)
