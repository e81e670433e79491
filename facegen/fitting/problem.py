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
#: The same objective with the geometry (pose, shape, expression) of a code held: ``(targets, code)`` -> a
#: function of the moving code whose value equals the objective's while only reflectance and light move; what
#: depends on the geometry alone (visibility, the photo's colours at the vertices, the landmark term, the
#: geometry's priors) is computed once.
HeldGeometry = Callable[[FitTargets, FaceCode], Callable[[FaceCode], Tensor]]


class FitProblem(NamedTuple):
    """How a task explains faces: its ``decoder`` (model, camera, albedo), the ``region`` (V,) bool of vertices
    its photometric term sees, the photometric stage's loss ``weights``, its ``objective`` (the photometric
    stage's Adam solver descends it; with those weights it is the cost the Levenberg-Marquardt solver minimises
    as least squares), its ``photometric`` term (``points`` or ``raster``; Levenberg-Marquardt fits ``points``)
    and, when it has one, the objective with the geometry held (:data:`HeldGeometry`), which the Adam solver
    uses when only reflectance and light move."""

    decoder: FaceDecoder
    region: Tensor
    weights: LossWeights
    objective: Objective
    photometric: str = "points"
    held_geometry: HeldGeometry | None = None


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
