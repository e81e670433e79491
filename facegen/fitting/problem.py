"""What a fit is given: the faces to explain (:class:`FitTargets`) and the model that explains them
(:class:`FitProblem`: decoder, photometric region, loss weights and the task's objective). The fitting engine
never sees a data batch; a task builds both (e.g. :meth:`facegen.tasks.MoFA.targets` and
:meth:`facegen.tasks.MoFA.fit_problem`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import NamedTuple

from torch import Tensor

from facegen.decoder import DecodedFace, FaceCode, FaceDecoder
from facegen.losses.weights import LossWeights


class FitTargets(NamedTuple):
    """B faces to fit: ``image`` (B, 3, S, S) in [0, 1], the face ``mask`` (B, 1, S, S) (> 0.5 counts),
    ``landmarks`` (B, 68, 2) in crop pixels (NaN: unused), their ``weights`` (B, 68) (0: unused) and optionally
    ``dense`` landmarks (B, D, 2) in crop pixels (NaN where the detector gave none)."""

    image: Tensor
    mask: Tensor
    landmarks: Tensor
    weights: Tensor
    dense: Tensor | None = None

    @property
    def size(self) -> int:
        """S, the crops' side in pixels."""
        return self.image.shape[-1]

    def take(self, faces: slice | Sequence[int]) -> FitTargets:
        """The faces ``faces`` (a slice or indices) as targets of their own."""
        if not isinstance(faces, slice):
            faces = list(faces)
        return FitTargets(*(None if part is None else part[faces] for part in self))


#: A task's objective: ``(targets, code, decoded) -> scalar``, with ``code`` already decoded into ``decoded``
#: when given (None: the objective decodes it).
Objective = Callable[[FitTargets, FaceCode, DecodedFace | None], Tensor]


class FitProblem(NamedTuple):
    """How a task explains faces: its ``decoder`` (model, camera, albedo), the ``region`` (V,) bool of vertices
    its photometric term sees, the photometric stage's loss ``weights``, its ``objective`` (the photometric
    stage's Adam solver descends it; with those weights it is the cost the Levenberg-Marquardt solver minimises
    as least squares) and its ``photometric`` term (``points`` or ``raster``; Levenberg-Marquardt fits
    ``points``)."""

    decoder: FaceDecoder
    region: Tensor
    weights: LossWeights
    objective: Objective
    photometric: str = "points"


def clone_out_of_inference(value):
    """``value`` with every tensor (also inside dicts, lists, tuples, NamedTuples and dataclasses) cloned;
    called outside inference mode, the clones are ordinary tensors that autograd can use."""
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: clone_out_of_inference(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(clone_out_of_inference(item) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(clone_out_of_inference(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: clone_out_of_inference(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **fields)
    return value
