"""Axis-aligned boxes (x0, y0, x1, y1) in pixels: the box of a point set and the overlap of two boxes."""

from __future__ import annotations

import numpy as np


def points_box(points: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) the bounding box of ``points`` (N, 2)."""
    return np.concatenate([points.min(0), points.max(0)])


def inside_fraction(box: np.ndarray, width: int, height: int) -> float:
    """The fraction of the area of ``box`` (x0, y0, x1, y1) that lies in an image of ``width`` x ``height`` pixels
    (0 for an empty box)."""
    x0, y0, x1, y1 = np.asarray(box, np.float64)
    area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    inside = max(min(x1, width) - max(x0, 0.0), 0.0) * max(min(y1, height) - max(y0, 0.0), 0.0)
    return inside / area if area > 0 else 0.0


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    union = np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter
    return float(inter / union) if union > 0 else 0.0
