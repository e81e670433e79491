"""Similarity alignment of a face to facegen's crop template, the crop itself, and landmark-based masks."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from facegen.geometry.affine import invert_affine
from facegen.geometry.landmarks import EYES, MOUTH_INNER


@cache
def crop_template(size: int, fill: float) -> np.ndarray:
    """(68, 2) float64 landmark positions in a ``size``² crop: the built-in mean face seen frontally in the
    default frame (:mod:`facegen.geometry.framing`), so real crops look like synthetic renders."""
    from facegen.geometry.framing import canonical_landmarks
    from facegen.morphable.builtin import builtin_model

    model = builtin_model()
    landmarks = model.mean[model.landmark_indices].double()
    return canonical_landmarks(landmarks, (size, size), fill=fill).numpy()


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size``² crop of ``image`` (H, W, 3) uint8 under ``matrix`` (2, 3, original -> crop pixels).

    Strong downscaling first shrinks the photo with area averaging, so crops of large photos do not alias.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1 / scale) if scale > 0 else 1
    if factor >= 2:
        height, width = image.shape[:2]
        small = (max(1, round(width / factor)), max(1, round(height / factor)))
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        # pixel centres: x_small = (x + 0.5) * small_w / w - 0.5
        sx, sy = small[0] / width, small[1] / height
        to_small = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])
        matrix = matrix @ np.vstack([invert_affine(to_small), [0, 0, 1]])
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
    )


def face_mask(landmarks: np.ndarray, size: int, kind: str = "face") -> np.ndarray:
    """(size, size) uint8 mask (0/255) from crop-space landmarks (68, 2).

    ``face``: the jaw contour closed by the eyebrows raised by a third of the nose length (forehead).
    ``skin``: the face without the eyes and the inside of the mouth.
    """
    if kind not in ("face", "skin"):
        raise ValueError(f"mask must be 'face' or 'skin', got {kind!r}")
    mask = np.zeros((size, size), np.uint8)
    lift = np.linalg.norm(landmarks[33] - landmarks[27]) / 3
    up = landmarks[27] - landmarks[8]
    up = up / max(np.linalg.norm(up), 1e-6)
    brows = landmarks[17:27][::-1] + lift * up
    outline = np.concatenate([landmarks[:17], brows])
    hull = cv2.convexHull(outline.astype(np.float32)).reshape(-1, 2)
    cv2.fillConvexPoly(mask, _fixed_point(hull), 255, lineType=cv2.LINE_AA, shift=_SHIFT)
    if kind == "skin":
        holes = [_fixed_point(landmarks[group]) for group in (EYES[:6], EYES[6:], MOUTH_INNER)]
        cv2.fillPoly(mask, holes, 0, lineType=cv2.LINE_AA, shift=_SHIFT)
    return mask


_SHIFT = 4  # fractional bits of the polygon vertices given to cv2


def _fixed_point(points: np.ndarray) -> np.ndarray:
    """(N, 2) sub-pixel polygon as cv2's fixed-point int32 with :data:`_SHIFT` fractional bits."""
    return np.round(np.asarray(points, np.float64).reshape(-1, 2) * (1 << _SHIFT)).astype(np.int32)
