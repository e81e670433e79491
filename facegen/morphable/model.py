"""The one face-model object every loader produces, and its canonical ``.npz`` file.

Conventions (all loaders convert to these):
- vertices in the model's own frame: Y up, the face looks along +Z, units named by ``units``;
- bases are stored per component as (K, V, 3) deltas of ONE standard deviation's direction, with the
  standard deviation kept separately in ``*_std`` (K,); coefficients given to :meth:`forward` are in units of
  standard deviations, so their statistical prior is N(0, 1) for PCA models;
- albedo is linear RGB in [0, 1];
- triangles are 0-based, counter-clockwise seen from outside;
- UVs follow PyTorch3D's TexturesUV: ``uv_coords`` (T, 2) in [0, 1] with v up, ``uv_faces`` (F, 3) index them.

Why one module over 400 lines: MorphableModel and the validation of its canonical file are one contract."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from facegen.atomic import atomic_file
from facegen.errors import BadFileError
from facegen.geometry.landmarks import NUM_LANDMARKS

SCHEMA_VERSION = 1
UNIT_TO_MM = {"um": 1e-3, "mm": 1.0, "cm": 10.0, "dm": 100.0, "m": 1000.0}


class ModelFileError(BadFileError):
    """A face-model file is missing a field, or a field has the wrong shape, type or values."""


class FaceGeometry(NamedTuple):
    """Output of :meth:`MorphableModel.forward`.

    vertices: (B, V, 3) in model units; albedo: (B, V, 3) linear RGB, or None when the model has no albedo.
    """

    vertices: Tensor
    albedo: Tensor | None


def check_finite(name: str, tensor: Tensor) -> None:
    """Raise a ValueError naming ``name`` when ``tensor`` holds NaN or inf."""
    if not torch.isfinite(tensor).all():
        raise ValueError(f"NaN or inf in {name}; check the encoder output or the optimiser state")


#: How a model's expression coefficients behave (see :class:`MorphableModel`).
ExpressionKind = Literal["pca", "blendshape"]


class MorphableModel(nn.Module):
    """A linear 3D morphable model: mean + shape + expression (+ optional albedo), with mesh topology.

    Args:
        mean: (V, 3) mean shape.
        shape_basis: (Ks, V, 3) identity directions; ``shape_std`` (Ks,) their standard deviations.
        expression_basis: (Ke, V, 3) expression directions; ``expression_std`` (Ke,).
        faces: (F, 3) int triangles, 0-based.
        landmark_indices: (68,) int vertex indices of the iBUG 68 landmarks.
        albedo_mean: (V, 3) in [0, 1], optional; ``albedo_basis`` (Ka, V, 3) and ``albedo_std`` (Ka,) with it.
        uv_coords: (T, 2) and ``uv_faces`` (F, 3), optional, PyTorch3D TexturesUV convention.
        masks: name -> (V,) bool vertex masks, e.g. ``face`` (the face region) and ``skin``.
        units: length unit of the vertices, one of ``UNIT_TO_MM``.
        name: a human-readable model name.
        expression_names: (Ke,) names of the expression components.
        expression_kind: ``pca`` (Gaussian coefficients, unbounded) or ``blendshape`` (weights that mean
            something only in [0, 1], as ICT-FaceKit's ARKit-style blendshapes).
        dense_triangles: (N,) triangle of each point of a dense landmark scheme, ``dense_barycentrics`` (N, 3)
            its weights there, ``dense_scheme`` the scheme's name (``mediapipe``: MediaPipe's 468-point face
            mesh; :mod:`facegen.morphable.dense`); optional.
    """

    def __init__(
        self,
        mean: Tensor,
        shape_basis: Tensor,
        shape_std: Tensor,
        expression_basis: Tensor,
        expression_std: Tensor,
        faces: Tensor,
        landmark_indices: Tensor,
        albedo_mean: Tensor | None = None,
        albedo_basis: Tensor | None = None,
        albedo_std: Tensor | None = None,
        uv_coords: Tensor | None = None,
        uv_faces: Tensor | None = None,
        masks: dict[str, Tensor] | None = None,
        units: str = "mm",
        name: str = "",
        expression_names: list[str] | None = None,
        dense_triangles: Tensor | None = None,
        dense_barycentrics: Tensor | None = None,
        dense_scheme: str | None = None,
        expression_kind: ExpressionKind = "pca",
    ) -> None:
        super().__init__()
        if expression_kind not in ("pca", "blendshape"):
            raise ModelFileError(
                f"{name or 'MorphableModel'}: expression_kind {expression_kind!r} is not pca or blendshape"
            )
        arrays = {
            "mean": mean,
            "shape_basis": shape_basis,
            "shape_std": shape_std,
            "expression_basis": expression_basis,
            "expression_std": expression_std,
            "faces": faces,
            "landmark_indices": landmark_indices,
            "albedo_mean": albedo_mean,
            "albedo_basis": albedo_basis,
            "albedo_std": albedo_std,
            "uv_coords": uv_coords,
            "uv_faces": uv_faces,
            "dense_triangles": dense_triangles,
            "dense_barycentrics": dense_barycentrics,
        }
        arrays.update({f"mask_{k}": v for k, v in (masks or {}).items()})
        arrays = {k: _as_numpy(v) for k, v in arrays.items() if v is not None}
        validate_arrays(arrays, units=units, source=name or "MorphableModel")
        for key, value in arrays.items():
            dtype = torch.long if key in _INDEX_FIELDS else (torch.bool if key.startswith("mask_") else None)
            tensor = torch.as_tensor(value, dtype=dtype) if dtype else torch.as_tensor(value).float()
            self.register_buffer(key, tensor.contiguous(), persistent=False)  # strided views index slowly
        for key in _OPTIONAL_FIELDS:
            if key not in arrays:
                setattr(self, key, None)
        if (dense_triangles is None) != (dense_scheme is None):
            raise ModelFileError(
                f"{name or 'MorphableModel'}: dense landmarks need both their arrays and a scheme"
            )
        self.dense_scheme = dense_scheme
        self.expression_kind = expression_kind
        self.mask_names = sorted(k[len("mask_") :] for k in arrays if k.startswith("mask_"))
        self.units = units
        self.name = name
        self.expression_names = list(expression_names) if expression_names is not None else None

    # ----------------------------------------------------------------------------------------- sizes
    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def n_shape(self) -> int:
        return self.shape_basis.shape[0]

    @property
    def n_expression(self) -> int:
        return self.expression_basis.shape[0]

    @property
    def n_albedo(self) -> int:
        return 0 if self.albedo_basis is None else self.albedo_basis.shape[0]

    @property
    def has_albedo(self) -> bool:
        return self.albedo_mean is not None

    @property
    def has_uv(self) -> bool:
        return self.uv_coords is not None

    @property
    def num_dense(self) -> int:
        """Points of the dense landmark scheme (0 without one)."""
        return 0 if self.dense_triangles is None else self.dense_triangles.shape[0]

    def dense_points(self, vertices: Tensor) -> Tensor:
        """(B, N, 3) dense landmarks on meshes ``vertices`` (B, V, 3) of this model (any frame and units).

        Raises:
            ValueError: the model has no dense landmarks (naming the command that adds them).
        """
        if self.dense_triangles is None:
            raise ValueError(
                f"face model {self.name!r} has no dense landmarks; add them with `facegen model convert ... "
                "--dense-landmarks mediapipe`"
            )
        corners = vertices[:, self.faces[self.dense_triangles]]  # (B, N, 3 corners, 3)
        return (corners * self.dense_barycentrics[None, :, :, None]).sum(2)

    @property
    def mm_per_unit(self) -> float:
        """Millimetres per model unit (multiply vertex errors by this to report mm)."""
        return UNIT_TO_MM[self.units]

    @property
    def expression_bounds(self) -> tuple[Tensor, Tensor] | None:
        """(Ke,) lower and upper limits of the expression coefficients (in standard deviations) of a blendshape
        model (``expression_kind``, e.g. ICT-FaceKit's ARKit-style blendshapes): weights in [0, 1], the only
        range in which a blendshape means something; None for PCA expressions (Gaussian, unbounded)."""
        if self.expression_kind != "blendshape":
            return None
        return torch.zeros_like(self.expression_std), 1.0 / self.expression_std.clamp(min=1e-12)

    def clip_expression(self, expression: Tensor) -> Tensor:
        """``expression`` (B, k) clipped into :attr:`expression_bounds` (unchanged for PCA expressions)."""
        bounds = self.expression_bounds
        if bounds is None:
            return expression
        k = expression.shape[-1]
        low, high = (bound[:k].to(expression) for bound in bounds)
        return torch.maximum(torch.minimum(expression, high), low)

    def mask(self, name: str) -> Tensor:
        """(V,) bool vertex mask ``name`` (see :attr:`mask_names`)."""
        if name not in self.mask_names:
            raise KeyError(f"face model {self.name!r} has no vertex mask {name!r}; it has {self.mask_names}")
        return getattr(self, f"mask_{name}")

    # --------------------------------------------------------------------------------------- forward
    def forward(
        self,
        shape: Tensor | None = None,
        expression: Tensor | None = None,
        albedo: Tensor | None = None,
    ) -> FaceGeometry:
        """Vertices and albedo from coefficients in units of standard deviations.

        Args:
            shape: (B, k) with k <= n_shape; missing trailing components are zero. None = mean shape.
            expression: (B, k) with k <= n_expression, or None.
            albedo: (B, k) with k <= n_albedo, or None (= mean albedo).

        Returns:
            FaceGeometry(vertices (B, V, 3), albedo (B, V, 3) in [0, 1] or None without an albedo model).
        """
        given = [c for c in (shape, expression, albedo) if c is not None]
        batch = given[0].shape[0] if given else 1
        vertices = self.mean.expand(batch, -1, -1)
        vertices = vertices + self._combine("shape", shape, self.shape_basis, self.shape_std)
        vertices = vertices + self._combine(
            "expression", expression, self.expression_basis, self.expression_std
        )
        colours = None
        if self.has_albedo:
            colours = self.albedo_mean.expand(batch, -1, -1)
            if self.albedo_basis is not None:
                colours = colours + self._combine("albedo", albedo, self.albedo_basis, self.albedo_std)
        elif albedo is not None and albedo.shape[-1] > 0:
            raise ValueError(
                f"face model {self.name!r} has no albedo basis, but albedo coefficients were given"
            )
        return FaceGeometry(vertices, colours)

    @staticmethod
    def _combine(name: str, coeffs: Tensor | None, basis: Tensor, std: Tensor) -> Tensor | float:
        if coeffs is None or coeffs.shape[-1] == 0:
            return 0.0
        if coeffs.dim() != 2 or coeffs.shape[1] > basis.shape[0]:
            raise ValueError(
                f"{name} coefficients must be (B, k) with k <= {basis.shape[0]}, got {tuple(coeffs.shape)}"
            )
        check_finite(f"{name} coefficients", coeffs)
        k = coeffs.shape[1]
        return torch.einsum("bk,kvc->bvc", coeffs * std[:k], basis[:k])

    # ----------------------------------------------------------------------------------- transforms
    def truncate(
        self, n_shape: int | None = None, n_expression: int | None = None, n_albedo: int | None = None
    ):
        """A copy keeping the first ``n_*`` components of each basis (None keeps all)."""
        arrays = self.to_arrays()
        for prefix, n in (("shape", n_shape), ("expression", n_expression), ("albedo", n_albedo)):
            if n is None or f"{prefix}_basis" not in arrays:
                continue
            have = arrays[f"{prefix}_basis"].shape[0]
            if not 0 <= n <= have:
                raise ValueError(f"cannot keep {n} {prefix} components: the model has {have}")
            arrays[f"{prefix}_basis"] = arrays[f"{prefix}_basis"][:n]
            arrays[f"{prefix}_std"] = arrays[f"{prefix}_std"][:n]
        if n_expression is not None and "expression_names" in arrays:
            arrays["expression_names"] = arrays["expression_names"][:n_expression]
        return MorphableModel.from_arrays(arrays, source=self.name)

    def with_uv(self, uv_coords: np.ndarray, uv_faces: np.ndarray) -> MorphableModel:
        """A copy with the UV layout ``uv_coords`` (T, 2) in [0, 1], ``uv_faces`` (F, 3) (see
        :mod:`facegen.morphable.uv_files`)."""
        arrays = self.to_arrays()
        arrays["uv_coords"], arrays["uv_faces"] = uv_coords.astype(np.float32), uv_faces.astype(np.int32)
        return MorphableModel.from_arrays(arrays, source=self.name)

    # ------------------------------------------------------------------------------------------ I/O
    def checksum(self) -> str:
        """SHA-256 (hexadecimal) of the canonical arrays (:meth:`to_arrays`: names, dtypes, shapes and values), the
        same for the same model however it was loaded; what shards record to say which model made them."""
        digest = hashlib.sha256()
        for name, array in sorted(self.to_arrays().items()):
            array = np.ascontiguousarray(array)
            digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
            digest.update(array.tobytes() if array.dtype.kind != "U" else str(array).encode())
        return digest.hexdigest()

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The model as the canonical dict of numpy arrays (see :func:`validate_arrays`)."""
        arrays: dict[str, np.ndarray] = {
            "schema_version": np.array(SCHEMA_VERSION),
            "units": np.array(self.units),
            "name": np.array(self.name),
        }
        keys = [*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS, *(f"mask_{m}" for m in self.mask_names)]
        for key in keys:
            value = getattr(self, key, None)
            if value is not None:
                value = value.detach().cpu().numpy()
                arrays[key] = value.astype(np.int32) if key in _INDEX_FIELDS else value
        if self.expression_names is not None:
            arrays["expression_names"] = np.array(self.expression_names)
        if self.dense_scheme is not None:
            arrays["dense_scheme"] = np.array(self.dense_scheme)
        if self.expression_kind != "pca":
            arrays["expression_kind"] = np.array(self.expression_kind)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], source: str = "arrays") -> MorphableModel:
        """Build from the canonical dict of arrays; every field is validated first."""
        arrays = dict(arrays)
        version = int(arrays.pop("schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise ModelFileError(
                f"{source}: schema_version {version} is newer than this facegen understands ({SCHEMA_VERSION}); "
                "upgrade facegen"
            )
        units = str(arrays.pop("units", "mm"))
        name = str(arrays.pop("name", Path(source).stem))
        names = arrays.pop("expression_names", None)
        scheme = arrays.pop("dense_scheme", None)
        kind = str(arrays.pop("expression_kind", "pca"))
        masks = {k[len("mask_") :]: arrays.pop(k) for k in list(arrays) if k.startswith("mask_")}
        unknown = set(arrays) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS)
        if unknown:
            raise ModelFileError(f"{source}: unknown fields {sorted(unknown)}")
        missing = [k for k in _REQUIRED_FIELDS if k not in arrays]
        if missing:
            raise ModelFileError(f"{source}: missing required fields {missing}")
        validate_arrays({**arrays, **{f"mask_{k}": v for k, v in masks.items()}}, units=units, source=source)
        return cls(
            **{k: torch.as_tensor(v) for k, v in arrays.items()},
            masks={k: torch.as_tensor(v) for k, v in masks.items()},
            units=units,
            name=name,
            expression_names=None if names is None else [str(n) for n in names],
            dense_scheme=None if scheme is None else str(scheme),
            expression_kind=kind,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the canonical ``.npz`` atomically (:func:`~facegen.atomic.atomic_file`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, durable=True) as handle:
            np.savez(handle, **self.to_arrays())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> MorphableModel:
        """Read a canonical ``.npz`` written by :meth:`save` or ``facegen model convert``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"face model file {path} does not exist; create it with `facegen model convert FORMAT "
                f"--source ... --out {path}` or use `builtin`"
            )
        if not zipfile.is_zipfile(path):
            raise ModelFileError(
                f"{path}: not a .npz archive (truncated or corrupt); convert or download the face model again"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except ValueError as error:
            problem = (
                "it holds Python objects, which facegen never loads"
                if "allow_pickle" in str(error)
                else error
            )
            raise ModelFileError(f"{path}: not a readable .npz face model ({problem})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise ModelFileError(
                f"{path}: not a readable .npz face model (truncated or corrupt: {error}); convert or download it "
                "again"
            ) from None
        if "schema_version" not in arrays:
            raise ModelFileError(
                f"{path}: no 'schema_version' field, so it is not a facegen face model; convert it first with "
                "`facegen model convert FORMAT --source FILE --out model.npz`"
            )
        return cls.from_arrays(arrays, source=str(path))

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, vertices={self.num_vertices}, faces={self.num_faces}, shape={self.n_shape}, "
            f"expression={self.n_expression}, albedo={self.n_albedo if self.has_albedo else None}, "
            f"uv={self.has_uv}, units={self.units!r}"
        )


_REQUIRED_FIELDS = (
    "mean",
    "shape_basis",
    "shape_std",
    "expression_basis",
    "expression_std",
    "faces",
    "landmark_indices",
)
_OPTIONAL_FIELDS = (
    "albedo_mean",
    "albedo_basis",
    "albedo_std",
    "uv_coords",
    "uv_faces",
    "dense_triangles",
    "dense_barycentrics",
)
_INDEX_FIELDS = ("faces", "landmark_indices", "uv_faces", "dense_triangles")


def _as_numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def validate_arrays(arrays: dict[str, np.ndarray], units: str, source: str) -> None:
    """Check every field's shape, dtype and values; raise :class:`ModelFileError` naming the first bad one."""

    def fail(field: str, problem: str) -> None:
        raise ModelFileError(f"{source}: field '{field}' {problem}")

    if units not in UNIT_TO_MM:
        fail("units", f"is {units!r}; expected one of {sorted(UNIT_TO_MM)}")
    mean = arrays["mean"]
    if mean.ndim != 2 or mean.shape[1] != 3 or mean.shape[0] < 3:
        fail("mean", f"must be (V, 3), got {mean.shape}")
    num_vertices = mean.shape[0]
    for prefix in ("shape", "expression", "albedo"):
        basis, std = arrays.get(f"{prefix}_basis"), arrays.get(f"{prefix}_std")
        if basis is None:
            if std is not None:
                fail(f"{prefix}_std", f"is given without {prefix}_basis")
            continue
        if basis.ndim != 3 or basis.shape[1:] != (num_vertices, 3):
            fail(f"{prefix}_basis", f"must be (K, {num_vertices}, 3), got {basis.shape}")
        if std is None or std.shape != (basis.shape[0],):
            fail(f"{prefix}_std", f"must be ({basis.shape[0]},), got {None if std is None else std.shape}")
        if (std < 0).any():
            fail(f"{prefix}_std", "has negative standard deviations")
    if "albedo_basis" in arrays and "albedo_mean" not in arrays:
        fail("albedo_mean", "is missing although albedo_basis is given")
    if "albedo_mean" in arrays and arrays["albedo_mean"].shape != (num_vertices, 3):
        fail("albedo_mean", f"must be ({num_vertices}, 3), got {arrays['albedo_mean'].shape}")
    for key, value in arrays.items():
        if key in _INDEX_FIELDS or key.startswith("mask_"):
            continue
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            fail(key, "contains NaN or inf")
    faces = arrays["faces"]
    _check_indices("faces", faces, num_vertices, fail)
    landmarks = arrays["landmark_indices"]
    if landmarks.shape != (NUM_LANDMARKS,):
        fail("landmark_indices", f"must be ({NUM_LANDMARKS},), got {landmarks.shape}")
    _check_indices("landmark_indices", landmarks, num_vertices, fail)
    if ("uv_coords" in arrays) != ("uv_faces" in arrays):
        fail(
            "uv_faces" if "uv_coords" in arrays else "uv_coords",
            "is missing: uv_coords and uv_faces go together",
        )
    if "uv_coords" in arrays:
        uv = arrays["uv_coords"]
        if uv.ndim != 2 or uv.shape[1] != 2:
            fail("uv_coords", f"must be (T, 2), got {uv.shape}")
        if arrays["uv_faces"].shape != faces.shape:
            fail("uv_faces", f"must have the shape of faces {faces.shape}, got {arrays['uv_faces'].shape}")
        _check_indices("uv_faces", arrays["uv_faces"], uv.shape[0], fail)
    for key, value in arrays.items():
        if key.startswith("mask_") and value.shape != (num_vertices,):
            fail(key, f"must be ({num_vertices},), got {value.shape}")
    if ("dense_triangles" in arrays) != ("dense_barycentrics" in arrays):
        fail("dense_barycentrics", "and dense_triangles go together")
    if "dense_triangles" in arrays:
        triangles, weights = arrays["dense_triangles"], arrays["dense_barycentrics"]
        if triangles.ndim != 1 or weights.shape != (len(triangles), 3):
            fail(
                "dense_barycentrics",
                f"must be (N, 3) for N = {triangles.shape} triangles, got {weights.shape}",
            )
        _check_indices("dense_triangles", triangles, len(faces), fail)
        if (weights < -1e-4).any() or not np.allclose(weights.sum(1), 1, atol=1e-3):
            fail("dense_barycentrics", "are not barycentric weights (non-negative, summing to 1)")


def _check_indices(field: str, indices: np.ndarray, upper: int, fail) -> None:
    if indices.dtype.kind not in "iu":
        fail(field, f"must hold integers, got dtype {indices.dtype}")
    if field not in ("landmark_indices", "dense_triangles") and (
        indices.ndim != 2 or indices.shape[1] != 3 or indices.shape[0] == 0
    ):
        fail(field, f"must be (F, 3) with F > 0, got {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= upper):
        fail(
            field,
            f"has indices outside [0, {upper}) (found {indices.min()}..{indices.max()}); is it 1-based?",
        )
