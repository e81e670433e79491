"""Pictures as uint8 arrays (W&B writes float images in [0, 1] as black PNGs): tensors to images and landmark
dots."""

from __future__ import annotations

import cv2
import numpy as np
from torch import Tensor


def to_uint8(image: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return image.detach().float().mul(255).round_().clamp_(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def draw_landmarks(
    image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], radius: int | None = None
) -> np.ndarray:
    """Filled dots of ``radius`` pixels (default: 1 per 128 rows of ``image``) at (N, 2) ``points``, drawn into
    ``image`` (or into a C-ordered copy, which OpenCV needs, when it is a strided view)."""
    radius = radius or max(1, image.shape[0] // 128)
    image = np.ascontiguousarray(image)
    for x, y in np.asarray(points):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, colour, -1, lineType=cv2.LINE_AA)
    return image
