"""A face model's landmark vertices re-chosen for a 2D detector's convention (:class:`VertexChoice`).

A model's 68 landmark vertices are where its authors put the iBUG points on the neutral mesh; a 2D detector (and
the 300-W annotations it learnt from) puts some of them elsewhere: the eyebrows on their upper edge, the inner lip
line where the lips meet. Over many faces fitted with the model, each re-chosen landmark moves to the vertex near
its current one (within ``radius``, model units) whose projection lies closest on average to the detector's point
(distances over the detected face's size sqrt(w·h), weighted by the detector's confidence). No annotation is used:
the detector's own points on unlabelled photos are the target, so the result is the detector's convention on the
model, not a fit to a benchmark. ``benchmarks/calibrate_landmarks.py`` runs it over photo folders.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facegen.fitting.plausibility import face_size

#: The landmarks re-chosen: eyebrows, nose, eyes and mouth. The jaw (0-16) is left: its cheek points slide to
#: the outline (:data:`facegen.fitting.landmark_model.SLIDING`) traced from the heights of these vertices.
RECHOSEN = tuple(range(17, 68))


class VertexChoice:
    """Accumulates, over fitted faces, each re-chosen landmark's mean distance from every candidate vertex's
    projection to the detector's point; :meth:`indices` picks the closest candidates.

    Args:
        mean: (V, 3) the model's mean shape (model units).
        indices: (68,) the current landmark vertices.
        radius: candidates lie within this distance of the current vertex on the mean shape (model units).
        points: the landmarks to re-choose (default :data:`RECHOSEN`).
    """

    def __init__(self, mean: Tensor, indices: Tensor, radius: float, points: tuple[int, ...] = RECHOSEN):
        self.start = indices.clone()
        self.points = points
        self.candidates = [
            torch.nonzero((mean - mean[indices[k]]).norm(dim=-1) <= radius)[:, 0] for k in points
        ]
        self.cost = [mean.new_zeros(len(c), dtype=torch.float64) for c in self.candidates]
        self.weight = mean.new_zeros(len(points), dtype=torch.float64)

    def add(self, pixels: Tensor, detected: Tensor, confidence: Tensor | None = None) -> None:
        """Fitted faces' projected vertices ``pixels`` (B, V, 2) and the detector's points ``detected``
        (B, 68, 2) in the same pixels (NaN where missing: not counted), with its per-point ``confidence``
        (B, 68) in [0, 1] (None: ones)."""
        size = face_size(detected)
        usable = detected.isfinite().all(-1)
        weight = (
            torch.ones_like(usable, dtype=detected.dtype) if confidence is None else confidence
        ) * usable
        detected = torch.nan_to_num(detected)
        for j, k in enumerate(self.points):
            distance = (pixels[:, self.candidates[j]] - detected[:, None, k]).norm(dim=-1) / size[:, None]
            self.cost[j] += (distance * weight[:, k, None]).sum(0).double()
            self.weight[j] += weight[:, k].sum().double()

    def indices(self) -> Tensor:
        """(68,) the landmark vertices: for each re-chosen landmark the candidate of least mean distance, the
        others (and those the detector never gave with any confidence) as given."""
        chosen = self.start.clone()
        for j, k in enumerate(self.points):
            if self.weight[j] > 0:
                chosen[k] = self.candidates[j][self.cost[j].argmin()]
        return chosen

    def mean_distance(self, indices: Tensor) -> float:
        """The confidence-weighted mean distance (over the face size) of the re-chosen landmarks at ``indices``
        (each must be one of its candidates, as :meth:`indices` and the start are), over the landmarks the
        detector gave."""
        seen = [j for j in range(len(self.points)) if self.weight[j] > 0]
        total = 0.0
        for j in seen:
            where = torch.nonzero(self.candidates[j] == indices[self.points[j]])[:, 0]
            total += float(self.cost[j][where[0]] / self.weight[j])
        return total / max(len(seen), 1)
