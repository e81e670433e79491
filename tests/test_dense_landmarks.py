"""Dense landmarks for any face model: closest points on triangles, the registration of a 468-point mesh onto a
model (a known mesh comes back exactly), the optional fields of the canonical .npz, `facegen model convert
--dense-landmarks` and the dense landmarks predict writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from scipy.spatial import Delaunay

from facegen.cli import main
from facegen.errors import BadFileError
from facegen.geometry.landmarks import MEDIAPIPE_INNER
from facegen.morphable.dense import (
    CanonicalMesh,
    closest_on_triangles,
    read_canonical_mesh,
    with_dense_landmarks,
)
from facegen.morphable.model import ModelFileError, MorphableModel
from facegen.morphable.registry import load_face_model
from tests.test_predict import synthetic_photos  # noqa: F401  (the fixture)


def test_closest_points_on_a_triangle_in_each_region():
    a, b, c = (torch.tensor(p, dtype=torch.float64) for p in ([0, 0, 0], [2, 0, 0], [0, 2, 0]))
    points = torch.tensor(
        [[0.5, 0.5, 3], [-1, -1, 0], [3, -1, 0], [-1, 3, 1], [1, -2, 0], [-2, 1, 0], [2, 2, -1]],
        dtype=torch.float64,
    )
    closest, bary = closest_on_triangles(points, a, b, c)
    expected = [[0.5, 0.5, 0], [0, 0, 0], [2, 0, 0], [0, 2, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]
    np.testing.assert_allclose(closest.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(bary.sum(-1).numpy(), 1.0)
    np.testing.assert_allclose(bary[6].numpy(), [0, 0.5, 0.5], atol=1e-12)  # on the edge b-c


def surface_samples(model: MorphableModel, seed: int = 0) -> tuple[CanonicalMesh, np.ndarray]:
    """A stand-in for MediaPipe's mesh: 468 points on the model's face surface (the 51 inner anchors exactly on
    its landmark vertices), triangulated in the image plane; returns the mesh (mm) and the points."""
    rng = np.random.default_rng(seed)
    faces = model.faces.numpy()
    region = model.mask("face")[model.faces].all(1).numpy() if "face" in model.mask_names else None
    candidates = np.flatnonzero(region) if region is not None else np.arange(len(faces))
    triangles = rng.choice(candidates, 468)
    weights = rng.dirichlet(np.ones(3), 468)
    mean = model.mean.double().numpy() * model.mm_per_unit
    points = (mean[faces[triangles]] * weights[..., None]).sum(1)
    anchors = MEDIAPIPE_INNER
    points[anchors] = mean[model.landmark_indices.numpy()[17:]]
    mesh = Delaunay(points[:, :2]).simplices
    return CanonicalMesh(points, mesh), points


def test_registering_a_mesh_sampled_on_the_model_gives_back_its_points():
    model = load_face_model("builtin")
    canonical, truth = surface_samples(model)
    angle = 0.3
    turn = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    moved = CanonicalMesh(0.37 * truth @ turn.T + np.array([5.0, -40.0, 12.0]), canonical.faces)
    dense, found = with_dense_landmarks(model, moved)
    points = dense.dense_points(dense.mean[None])[0].double().numpy() * model.mm_per_unit
    np.testing.assert_allclose(points, truth, atol=1e-3)  # mm
    assert found.distance_mm.max() < 1e-3 and dense.dense_scheme == "mediapipe"
    # a smooth bump pushes the mesh 1.5 mm off the surface: it is pulled back on and stays where it was
    bump = 1.5 * np.exp(-((truth[:, :2] - truth[:, :2].mean(0)) ** 2).sum(1) / (2 * 30.0**2))
    bumped = CanonicalMesh(truth + np.stack([0 * bump, 0 * bump, bump], 1), canonical.faces)
    dense, found = with_dense_landmarks(model, bumped)
    points = dense.dense_points(dense.mean[None])[0].double().numpy() * model.mm_per_unit
    assert np.median(found.distance_mm) < 0.05
    assert np.linalg.norm(points - truth, axis=1).mean() < 0.5


def test_the_correspondence_is_kept_in_the_npz_and_checked(tmp_path):
    model = load_face_model("builtin")
    canonical, _ = surface_samples(model)
    dense, _ = with_dense_landmarks(model, canonical)
    loaded = MorphableModel.load(dense.save(tmp_path / "dense.npz"))
    assert loaded.dense_scheme == "mediapipe" and loaded.num_dense == 468
    assert torch.equal(loaded.dense_triangles, dense.dense_triangles)
    assert loaded.truncate(n_shape=10).num_dense == 468  # copies keep them
    with pytest.raises(ValueError, match="--dense-landmarks mediapipe"):
        model.dense_points(model.mean[None])
    arrays = dense.to_arrays()
    arrays["dense_barycentrics"] = arrays["dense_barycentrics"] * 2
    with pytest.raises(ModelFileError, match="dense_barycentrics"):
        MorphableModel.from_arrays(arrays)
    arrays = dense.to_arrays()
    arrays["dense_triangles"] = arrays["dense_triangles"] + model.num_faces
    with pytest.raises(ModelFileError, match="dense_triangles"):
        MorphableModel.from_arrays(arrays)


def write_canonical_obj(path, mesh: CanonicalMesh) -> None:
    """MediaPipe's layout: centimetres, ``v``, ``vt`` and ``f v/vt`` lines."""
    lines = ["mtllib canonical_face_model.mtl"]
    lines += [f"v {x / 10:.6f} {y / 10:.6f} {z / 10:.6f}" for x, y, z in mesh.vertices]
    lines += [
        f"vt {u:.6f} {v:.6f}" for u, v in np.random.default_rng(0).uniform(0, 1, (len(mesh.vertices), 2))
    ]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in face) for face in mesh.faces]
    path.write_text("\n".join(lines) + "\n")


def test_model_convert_adds_dense_landmarks_from_the_canonical_obj(tmp_path, capsys):
    model = load_face_model("builtin")
    canonical, truth = surface_samples(model, seed=1)
    write_canonical_obj(tmp_path / "canonical.obj", canonical)
    mesh = read_canonical_mesh(tmp_path / "canonical.obj")
    np.testing.assert_allclose(mesh.vertices, truth, atol=1e-5)  # centimetres read as millimetres
    model.save(tmp_path / "builtin.npz")
    args = [
        "model",
        "convert",
        "npz",
        "--source",
        str(tmp_path / "builtin.npz"),
        "--out",
        str(tmp_path / "d.npz"),
    ]
    assert main([*args, "--dense-landmarks", str(tmp_path / "canonical.obj")]) == 0
    assert "dense landmarks (mediapipe, 468 points)" in capsys.readouterr().out
    assert main(["model", "info", str(tmp_path / "d.npz"), "--json", "true"]) == 0
    assert json.loads(capsys.readouterr().out)["dense_landmarks"] == "mediapipe (468)"
    (tmp_path / "short.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(BadFileError, match="468 vertices"):
        read_canonical_mesh(tmp_path / "short.obj")
    assert main([*args, "--dense-landmarks", str(tmp_path / "short.obj")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_predict_writes_the_dense_landmarks_of_a_model_that_has_them(tmp_path, synthetic_photos):  # noqa: F811
    photos, _ = synthetic_photos
    model = load_face_model("builtin")
    canonical, _ = surface_samples(model)
    dense, _ = with_dense_landmarks(model, canonical)
    dense.save(tmp_path / "dense.npz")
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
        "model": {
            "class_path": "facegen.tasks.MoFA",
            "init_args": {
                "face_model": str(tmp_path / "dense.npz"),
                "image_size": 64,
                "depths": [1],
                "width": 8,
            },
        },
        "data": {
            "class_path": "facegen.data.FaceDataModule",
            "init_args": {"predict_dir": str(photos), "predict_detector": "files", "num_workers": 0},
        },
    }
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    main(["predict", "--config", str(tmp_path / "predict.yaml"), "--out", str(out), "--outputs", "[code]"])
    record = json.loads((out / "face0_f0" / "code.json").read_text())
    dense_record = record["dense_landmarks"]
    assert dense_record["scheme"] == "mediapipe" and np.shape(dense_record["camera"]) == (468, 3)
    anchors = MEDIAPIPE_INNER  # registered onto the landmark vertices: the same points
    np.testing.assert_allclose(
        np.asarray(dense_record["model"])[anchors], np.asarray(record["landmarks_3d_model"])[17:], atol=1e-3
    )
    np.testing.assert_allclose(
        np.asarray(dense_record["photo_px"])[anchors],
        np.asarray(record["landmarks_photo_px"])[17:],
        atol=0.05,
    )


def test_dense_landmarks_pin_the_shape_better_than_the_68():
    """Faces of the built-in model fitted from the mean face to their exact projected landmarks: the dense
    points recover the shape closer than the 68 alone (and the stage runs without them when they are NaN)."""
    from facegen.decoder.code import FaceCode
    from facegen.evaluation.geometry import vertex_error
    from facegen.fitting import LandmarkModel, LandmarkStage, fit_landmarks
    from facegen.tasks import MoFA
    from tests.test_predict import synthetic_faces

    model = load_face_model("builtin")
    canonical, _ = surface_samples(model)
    dense_model, _ = with_dense_landmarks(model, canonical)
    task = MoFA(image_size=64, depths=(1,), width=8)
    task.decoder.model = dense_model
    true, batch = synthetic_faces(task, 6, seed=5)
    with torch.no_grad():
        decoded = task.decoder(true)
        points = dense_model.dense_points(decoded.vertices)
        dense = (
            points[..., :2] / points[..., 2:] * task.decoder.intrinsics.diagonal()[:2]
            + task.decoder.intrinsics[:2, 2]
        )
    landmarks = LandmarkModel(task.decoder, true.shape.shape[1], true.expression.shape[1])
    start = FaceCode(*(torch.zeros_like(p) for p in true))._replace(
        translation=true.translation, light=true.light
    )
    stage = LandmarkStage(iterations=15, shape_prior=1e-3, expression_prior=1e-3, dense=1.0)
    weights = torch.ones(6, 68)
    errors = {}
    for name, given in (
        ("sparse", None),
        ("dense", dense),
        ("missing", torch.full_like(dense, float("nan"))),
    ):
        fitted, _ = fit_landmarks(landmarks, start, batch.landmarks, weights, 64, stage, dense=given)
        vertices = dense_model(shape=fitted.shape, expression=fitted.expression).vertices
        truth = dense_model(shape=true.shape, expression=true.expression).vertices
        errors[name] = float(vertex_error(vertices, truth, scale=True).mean())
    assert errors["dense"] < 0.8 * errors["sparse"]
    assert (
        errors["missing"] == errors["sparse"]
    )  # no dense point given: the sparse fit itself, not a near one


def test_a_schedule_with_dense_landmarks_needs_a_model_that_has_them():
    from facegen.errors import ConfigError
    from facegen.fitting import FitSchedule, LandmarkStage
    from facegen.tasks import MoFA

    with pytest.raises(ConfigError, match="--dense-landmarks mediapipe"):
        MoFA(
            image_size=64,
            depths=(1,),
            width=8,
            fit=FitSchedule(landmarks=LandmarkStage(iterations=2, dense=1.0)),
        )


def test_the_canonical_mesh_is_downloaded_once_and_checked(tmp_path, monkeypatch):
    from facegen.errors import ConfigError
    from facegen.morphable import dense as dense_module

    canonical, _ = surface_samples(load_face_model("builtin"))
    write_canonical_obj(tmp_path / "good.obj", canonical)
    (tmp_path / "short.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    monkeypatch.setattr(dense_module, "CANONICAL_URL", (tmp_path / "short.obj").as_uri())
    with pytest.raises(BadFileError, match="468 vertices"):
        dense_module.fetch_canonical_mesh(tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.obj"))  # a wrong download does not stay in the cache
    monkeypatch.setattr(dense_module, "CANONICAL_URL", (tmp_path / "missing.obj").as_uri())
    with pytest.raises(ConfigError, match="--dense-landmarks FILE.obj") as error:
        dense_module.fetch_canonical_mesh(tmp_path / "cache")
    assert "\n" not in str(error.value)
    monkeypatch.setattr(dense_module, "CANONICAL_URL", (tmp_path / "good.obj").as_uri())
    path = dense_module.fetch_canonical_mesh(tmp_path / "cache")
    assert read_canonical_mesh(path).vertices.shape == (468, 3)
    (tmp_path / "good.obj").unlink()
    assert dense_module.fetch_canonical_mesh(tmp_path / "cache") == path  # cached: no second download
