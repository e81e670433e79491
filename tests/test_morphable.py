"""MorphableModel: forward, truncation, canonical npz round trip and validation, the built-in model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.morphable.builtin import builtin_model
from facegen.morphable.model import ModelFileError, MorphableModel
from facegen.morphable.registry import load_face_model


def test_builtin_model_is_face_like_and_complete(builtin):
    assert 2000 <= builtin.num_vertices <= 6000
    assert builtin.has_albedo and builtin.has_uv and builtin.units == "mm"
    assert builtin.landmark_indices.unique().numel() == 68
    size = builtin.mean.max(0).values - builtin.mean.min(0).values
    assert 120 < size[0] < 160 and 170 < size[1] < 220  # a face's width and height in mm
    lm = builtin.mean[builtin.landmark_indices]
    assert lm[30, 2] > lm[36, 2] + 10  # nose tip in front of the eye corners
    assert lm[8, 1] < lm[57, 1] < lm[33, 1] < lm[27, 1] < lm[19, 1]  # chin < lip < nose < bridge < brow
    assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]  # eyes left to right in the image
    assert ((builtin.albedo_mean >= 0) & (builtin.albedo_mean <= 1)).all()
    uv = builtin.uv_coords
    assert uv.min() >= 0 and uv.max() <= 1


def test_builtin_model_is_deterministic(builtin):
    again = builtin_model()
    for name in ("mean", "shape_basis", "albedo_basis", "expression_basis"):
        assert torch.equal(getattr(again, name), getattr(builtin, name))


def test_builtin_shape_variation_is_plausible(builtin):
    geometry = builtin(shape=torch.randn(16, builtin.n_shape))
    offset = (geometry.vertices - builtin.mean).norm(dim=-1)
    assert 1.0 < offset.mean() < 15.0  # millimetres: visible but not monstrous identity changes
    smile = builtin(expression=torch.eye(builtin.n_expression)[[1]] * 2).vertices - builtin.mean
    mouth_corner = builtin.landmark_indices[54]
    assert smile[0, mouth_corner, 1] > 2.0  # smiling raises the mouth corner


def test_forward_shapes_defaults_and_gradients(builtin):
    shape = torch.randn(3, 10, requires_grad=True)
    albedo = torch.randn(3, 5, requires_grad=True)
    geometry = builtin(shape=shape, albedo=albedo)
    assert geometry.vertices.shape == (3, builtin.num_vertices, 3)
    assert geometry.albedo.shape == (3, builtin.num_vertices, 3)
    (geometry.vertices.sum() + geometry.albedo.sum()).backward()
    assert shape.grad.abs().sum() > 0 and albedo.grad.abs().sum() > 0
    mean = builtin().vertices
    assert mean.shape == (1, builtin.num_vertices, 3) and torch.allclose(mean[0], builtin.mean)


def test_forward_matches_explicit_linear_combination(builtin):
    shape, expression = torch.randn(2, builtin.n_shape), torch.randn(2, builtin.n_expression)
    vertices = builtin(shape=shape, expression=expression).vertices
    expected = (
        builtin.mean
        + torch.einsum("k,kvc->vc", shape[1] * builtin.shape_std, builtin.shape_basis)
        + torch.einsum("k,kvc->vc", expression[1] * builtin.expression_std, builtin.expression_basis)
    )
    assert torch.allclose(vertices[1], expected, atol=1e-3)


def test_nan_coefficients_raise(builtin):
    with pytest.raises(ValueError, match="NaN or inf in shape coefficients"):
        builtin(shape=torch.tensor([[float("nan")]]))


def test_too_many_coefficients_raise(builtin):
    with pytest.raises(ValueError, match="expression coefficients must be"):
        builtin(expression=torch.zeros(1, builtin.n_expression + 1))


def test_truncate_keeps_leading_components(builtin):
    small = builtin.truncate(n_shape=10, n_expression=4, n_albedo=0)
    assert (small.n_shape, small.n_expression, small.n_albedo) == (10, 4, 0)
    coeffs = torch.randn(1, 10)
    assert torch.allclose(small(shape=coeffs).vertices, builtin(shape=coeffs).vertices, atol=1e-4)
    with pytest.raises(ValueError, match="cannot keep 500 shape"):
        builtin.truncate(n_shape=500)


def test_npz_round_trip_is_exact(builtin, tmp_path):
    path = builtin.save(tmp_path / "model.npz")
    loaded = MorphableModel.load(path)
    for name in (
        "mean",
        "shape_basis",
        "expression_std",
        "albedo_basis",
        "faces",
        "uv_faces",
        "landmark_indices",
    ):
        assert torch.equal(getattr(loaded, name), getattr(builtin, name)), name
    assert loaded.mask_names == builtin.mask_names and loaded.expression_names == builtin.expression_names
    assert loaded.units == "mm" and loaded.name == builtin.name
    assert load_face_model(path).num_vertices == builtin.num_vertices
    assert not list(tmp_path.glob("*.tmp"))


def test_model_without_albedo_is_first_class(builtin):
    arrays = {k: v for k, v in builtin.to_arrays().items() if not k.startswith("albedo")}
    model = MorphableModel.from_arrays(arrays)
    assert not model.has_albedo and model.n_albedo == 0
    assert model(shape=torch.zeros(2, 3)).albedo is None
    with pytest.raises(ValueError, match="no albedo basis"):
        model(albedo=torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("shape_basis", lambda a: a["shape_basis"][:, :-1], "field 'shape_basis' must be"),
        ("faces", lambda a: a["faces"] + 1, "field 'faces' has indices outside"),
        ("landmark_indices", lambda a: a["landmark_indices"][:60], "field 'landmark_indices' must be"),
        ("mean", lambda a: np.where(np.arange(a["mean"].shape[0])[:, None] == 3, np.nan, a["mean"]), "NaN"),
        ("uv_faces", lambda a: a["uv_faces"][:-1], "field 'uv_faces' must have the shape"),
        ("shape_std", lambda a: -a["shape_std"], "negative standard deviations"),
    ],
)
def test_inconsistent_files_are_rejected_at_load(builtin, tmp_path, field, value, message):
    arrays = builtin.to_arrays()
    arrays[field] = value(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match=message) as raised:
        MorphableModel.load(path)
    assert str(path) in str(raised.value)


def test_missing_and_foreign_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="facegen model convert"):
        MorphableModel.load(tmp_path / "absent.npz")
    np.savez(tmp_path / "foreign.npz", vertices=np.zeros((3, 3)))
    with pytest.raises(ModelFileError, match="schema_version"):
        MorphableModel.load(tmp_path / "foreign.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a .npz archive"):
        MorphableModel.load(tmp_path / "garbage.npz")
    with pytest.raises(ValueError, match="convert other formats first"):
        load_face_model(tmp_path / "model.mat")


def test_device_agnostic(builtin):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [builtin.to(d)(shape=torch.ones(1, 5, device=d)).vertices.cpu() for d in devices]
    assert all(torch.allclose(results[0], r, atol=1e-4) for r in results)
