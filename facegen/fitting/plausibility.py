"""Fits that should not be written as results: landmarks the detector itself does not trust (every point of low
confidence), the fitted face far from the landmarks it was fitted to (the detector gave something no face
explains, or the fit failed), or turned away from the camera.

:data:`MIN_CONFIDENCE`: a mean confidence of 0.1 is, for the ``dlib`` backend's agreement confidence, dlib and
the mesh a mean 15 % of the face size apart (three times its agreement threshold): one of them lost the face.
On the wild development set it flags one face of 86 (mean 0.06; the next is 0.15, the median 0.72).

:data:`MAX_LANDMARK_DISTANCE` was set on the wild development set (86 faces, ``configs/photos_ict.yaml``): the
fitted 68 points (2D convention) lie on average 1.2 % of the face size from the detected ones, 3.1 % for the
worst face, so 5 % flags only what no plausible face explains.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Mean distance between fitted and detected points, as a fraction of sqrt(w x h) of the detected points' box.
MAX_LANDMARK_DISTANCE = 0.05
#: Mean landmark confidence below which a face's landmarks are not fitted as a result.
MIN_CONFIDENCE = 0.1
#: A face turned further than this (degrees of yaw) shows the camera the back of the head.
MAX_YAW_DEGREES = 90.0


def face_size(points: Tensor) -> Tensor:
    """(B,) sqrt(w·h) of the box around each face's finite points (B, N, 2), the NME's normaliser (1e-6 for a
    face without any)."""
    usable = torch.isfinite(points).all(-1)[..., None]
    big, small = torch.finfo(points.dtype).max, torch.finfo(points.dtype).min
    low = torch.where(usable, points, big).amin(1)
    high = torch.where(usable, points, small).amax(1)
    return (high - low).clamp(min=1e-6).prod(-1).sqrt()


def implausible_fits(
    detected: Tensor, fitted: Tensor, rotation: Tensor, confidence: Tensor | None = None
) -> list[str | None]:
    """Per face, why its fit is implausible, or None: ``detected`` and ``fitted`` (B, 68, 2) pixels (NaN where
    a point is missing; a face without any is not judged), ``rotation`` (B, 3) code Euler angles in radians,
    ``confidence`` (B, 68) the detector's per-point confidence in [0, 1] (None: not given)."""
    usable = torch.isfinite(detected).all(-1)  # (B, 68)
    trust = None
    if confidence is not None:
        trust = (confidence.to(detected) * usable).sum(-1) / usable.sum(-1).clamp(min=1)
    filled = torch.where(usable[..., None], detected, torch.zeros_like(detected))
    count = usable.sum(-1).clamp(min=1)
    size = face_size(detected)
    distance = ((fitted - filled).norm(dim=-1) * usable).sum(-1) / count / size  # (B,)
    reasons: list[str | None] = []
    for face in range(len(detected)):
        yaw = math.degrees(float(rotation[face, 1]))
        if trust is not None and usable[face].any() and float(trust[face]) < MIN_CONFIDENCE:
            reasons.append(
                f"the detector's landmarks are all of low confidence (mean {float(trust[face]):.2f}, at least "
                f"{MIN_CONFIDENCE:g} needed)"
            )
        elif usable[face].any() and float(distance[face]) > MAX_LANDMARK_DISTANCE:
            reasons.append(
                f"the fitted landmarks lie {100 * float(distance[face]):.1f} % of the face size from the detected "
                f"ones (at most {100 * MAX_LANDMARK_DISTANCE:g} %)"
            )
        elif abs(yaw) > MAX_YAW_DEGREES:
            reasons.append(f"the fitted face is turned {yaw:.0f} degrees, away from the camera")
        else:
            reasons.append(None)
    return reasons
