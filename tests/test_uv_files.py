"""UV layouts for face models without one: ``facegen model convert ... --uv FILE`` from per-vertex or per-corner
arrays (.npy, .mat) or an OBJ of the model's topology, checked against the model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from facegen.cli import main
from facegen.errors import BadFileError
from facegen.morphable.model import MorphableModel
from facegen.morphable.uv_files import read_uv_layout


@pytest.fixture
def bare_model(tmp_path, builtin):
    """The built-in model without its UV layout, as a canonical .npz."""
    arrays = {k: v for k, v in builtin.to_arrays().items() if not k.startswith("uv_")}
    path = tmp_path / "bare.npz"
    MorphableModel.from_arrays(arrays).save(path)
    return path, MorphableModel.load(path)


def _planar_uv(model: MorphableModel) -> np.ndarray:
    """A per-vertex layout: the mean face's x, y scaled into [0, 1]."""
    xy = model.mean[:, :2].double().numpy()
    return (xy - xy.min(0)) / np.ptp(xy, axis=0)


def test_per_vertex_npy_and_mat_layouts_are_converted_into_the_model(tmp_path, bare_model, capsys):
    path, model = bare_model
    uv = _planar_uv(model)
    np.save(tmp_path / "uv.npy", uv)
    out = tmp_path / "with_uv.npz"
    assert (
        main(
            [
                "model",
                "convert",
                "npz",
                "--source",
                str(path),
                "--out",
                str(out),
                "--uv",
                str(tmp_path / "uv.npy"),
            ]
        )
        == 0
    )
    assert "UV layout from uv.npy" in capsys.readouterr().out
    converted = MorphableModel.load(out)
    assert converted.has_uv and np.allclose(converted.uv_coords.numpy(), uv, atol=1e-6)
    assert np.array_equal(converted.uv_faces.numpy(), model.faces.numpy())
    savemat(tmp_path / "BFM_UV.mat", {"UV": uv.T, "other": np.zeros((3, 3))})  # (2, V) is accepted too
    layout = read_uv_layout(tmp_path / "BFM_UV.mat", model.faces.numpy(), model.num_vertices)
    assert np.allclose(layout.uv_coords, uv, atol=1e-6)


def test_per_corner_and_obj_layouts_and_flipped_triangles(tmp_path, bare_model):
    from facegen.export.obj import obj_text

    path, model = bare_model
    faces = model.faces.numpy()
    uv = _planar_uv(model)
    corners = uv[faces].copy()  # (F, 3, 2)
    layout = read_uv_layout(_save(tmp_path / "corners.npy", corners), faces, model.num_vertices)
    assert np.allclose(layout.uv_coords[layout.uv_faces], corners, atol=1e-6)
    assert "0 flipped" in layout.report
    corners[0] = corners[0][[0, 2, 1]]  # one triangle against the layout's winding
    assert (
        "1 flipped" in read_uv_layout(_save(tmp_path / "c2.npy", corners), faces, model.num_vertices).report
    )
    (tmp_path / "topology.obj").write_text(obj_text(model.mean.numpy(), faces, uv_coords=uv, uv_faces=faces))
    layout = read_uv_layout(tmp_path / "topology.obj", faces, model.num_vertices)
    assert np.allclose(layout.uv_coords[layout.uv_faces], uv[faces], atol=1e-5)


def _save(path, array):
    np.save(path, array)
    return path


def test_layouts_that_do_not_fit_the_model_are_refused_in_one_line(tmp_path, bare_model, capsys):
    path, model = bare_model
    faces, count = model.faces.numpy(), model.num_vertices
    with pytest.raises(BadFileError, match=f"expected \\({count}, 2\\) per vertex"):
        read_uv_layout(_save(tmp_path / "short.npy", np.zeros((count - 1, 2))), faces, count)
    with pytest.raises(BadFileError, match="outside \\[0, 1\\]"):
        read_uv_layout(_save(tmp_path / "wide.npy", _planar_uv(model) * 2), faces, count)
    savemat(tmp_path / "full_bfm.mat", {"UV": np.zeros((count + 10, 2))})
    with pytest.raises(BadFileError, match="indexed to this model's vertices"):
        read_uv_layout(tmp_path / "full_bfm.mat", faces, count)
    args = ["model", "convert", "npz", "--source", str(path), "--out", str(tmp_path / "x.npz")]
    (tmp_path / "layout.png").write_bytes(b"png")
    assert main([*args, "--uv", str(tmp_path / "layout.png")]) == 2
    assert "unknown UV file type '.png'" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
