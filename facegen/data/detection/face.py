"""What every landmark backend gives (:class:`DetectedFace`) and is (:class:`LandmarkDetector`): the types the
backends (:mod:`~facegen.data.detection.detectors`, :mod:`~facegen.data.detection.litert_face`,
:mod:`~facegen.data.detection.dlib_landmarks`) share, in a module of their own so that none imports another's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class DetectedFace:
    """One face: ``landmarks`` (68, 2) float32 in photo pixels, ``bbox`` (x0, y0, x1, y1), detector score,
    ``confidence`` (68,) float32 in [0, 1] per landmark when the backend gives one (face-alignment: its heatmap
    peaks), else None, and ``dense`` (N, 2) float32 photo pixels of a dense scheme (MediaPipe's 468 points from
    the ``litert`` and ``mediapipe`` backends), else None."""

    landmarks: np.ndarray
    bbox: tuple[float, float, float, float]
    score: float
    detector: str
    confidence: np.ndarray | None = None
    dense: np.ndarray | None = None


class LandmarkDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in ``image`` (H, W, 3) uint8 RGB."""


def landmark_bbox(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = landmarks.min(0)
    x1, y1 = landmarks.max(0)
    return float(x0), float(y0), float(x1), float(y1)
