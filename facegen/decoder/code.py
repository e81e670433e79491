"""The semantic face code: named slices of one vector, sized from the face model (MoFA's layout by default).

Meaning of each part (the decoder, :class:`facegen.decoder.FaceDecoder`, is the reference):
- ``rotation`` (3): Euler angles in radians (pitch, yaw, roll) applied in the camera frame; 0 is frontal.
- ``translation`` (3): offset from the default framing (:func:`facegen.geometry.frontal_translation`) in units
  of a tenth of the default camera distance; 0 is the face centred at the default distance.
- ``shape``, ``expression``, ``albedo``: morphable-model coefficients in standard deviations.
- ``light`` (27): SH radiance coefficients, 9 per RGB channel (:mod:`facegen.geometry.sh`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from facegen.geometry.precision import upcast
from facegen.geometry.sh import SH_COEFFS

PARTS = ("rotation", "translation", "shape", "expression", "albedo", "light")


class FaceCode(NamedTuple):
    """One face code per batch element; every field is (B, size of the part)."""

    rotation: Tensor
    translation: Tensor
    shape: Tensor
    expression: Tensor
    albedo: Tensor
    light: Tensor

    @property
    def batch_size(self) -> int:
        return self.rotation.shape[0]

    def to_dict(self) -> dict[str, Tensor]:
        return self._asdict()

    def flatten(self) -> Tensor:
        """(B, total) the parts concatenated in :data:`PARTS` order."""
        return torch.cat(list(self), -1)

    def upcast(self) -> FaceCode:
        """Half-precision parts (an encoder under bf16/fp16 autocast) as float32; others as they are."""
        return FaceCode(*(upcast(part) for part in self))

    def take(self, faces: list[int] | slice) -> FaceCode:
        """The codes of the batch elements ``faces``, in that order."""
        return FaceCode(*(part[faces] for part in self))

    def put(self, faces: list[int], other: FaceCode) -> FaceCode:
        """A copy with the codes of batch elements ``faces`` replaced by ``other``'s (len(faces) codes)."""
        parts = [part.clone() for part in self]
        for part, new in zip(parts, other, strict=True):
            part[faces] = new.to(part)
        return FaceCode(*parts)


@dataclass(frozen=True)
class CodeLayout:
    """Sizes of the code parts; ``shape``/``expression``/``albedo`` default to MoFA's 80/64/80."""

    shape: int = 80
    expression: int = 64
    albedo: int = 80
    rotation: int = 3
    translation: int = 3
    light: int = SH_COEFFS

    @classmethod
    def for_model(
        cls, model, shape: int = 80, expression: int = 64, albedo: int = 80, albedo_rank: int | None = None
    ) -> CodeLayout:
        """MoFA's sizes, capped by what ``model`` (a MorphableModel) has. With a learned albedo basis
        (``albedo_rank``, also on a model that has its own) the albedo part has ``albedo_rank`` entries; else the
        model's basis capped at ``albedo``, or ``albedo`` for a model without one."""
        n_albedo = model.n_albedo if model.has_albedo and model.albedo_basis is not None else None
        if albedo_rank is not None:
            albedo_size = albedo_rank
        else:
            albedo_size = min(albedo, n_albedo) if n_albedo is not None else albedo
        return cls(
            shape=min(shape, model.n_shape),
            expression=min(expression, model.n_expression),
            albedo=albedo_size,
        )

    def sizes(self) -> dict[str, int]:
        return {part: getattr(self, part) for part in PARTS}

    @property
    def total(self) -> int:
        return sum(self.sizes().values())

    def split(self, vector: Tensor) -> FaceCode:
        """(B, total) -> :class:`FaceCode`."""
        if vector.shape[-1] != self.total:
            raise ValueError(
                f"code vector has {vector.shape[-1]} entries, the layout {self.sizes()} needs {self.total}"
            )
        return FaceCode(*torch.split(vector, list(self.sizes().values()), -1))

    def zeros(self, batch: int, device=None, dtype=None) -> FaceCode:
        return self.split(torch.zeros(batch, self.total, device=device, dtype=dtype))

    def from_dict(self, parts: dict[str, Tensor]) -> FaceCode:
        """A code from a dict of (B, size) tensors, e.g. a batch's ``params``; checks the sizes."""
        for part, size in self.sizes().items():
            if part not in parts:
                raise KeyError(f"code part {part!r} is missing (have {sorted(parts)})")
            if parts[part].shape[-1] != size:
                raise ValueError(
                    f"code part {part!r} has {parts[part].shape[-1]} entries, the layout needs {size}"
                )
        return FaceCode(*(parts[part] for part in PARTS))
