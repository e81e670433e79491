"""GLB export: the file read back by a second library (pygltflib) gives the mesh, UVs, normals, texture bytes,
morph targets with their names and the fitted weights, which reproduce the fitted vertices; and ``facegen
predict --outputs [glb]`` writes one per face."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from docs.make_glb_figure import read_glb
from facegen.cli import main
from facegen.export import read_obj
from facegen.export.files import png_bytes
from facegen.export.gltf import GltfMesh, glb_bytes
from tests.test_predict import predict_config, synthetic_photos  # noqa: F401 (the fixture)


def fitted_positions(gltf, accessor) -> np.ndarray:
    """The mesh as shown by default: POSITION plus each morph target times its weight."""
    primitive = gltf.meshes[0].primitives[0]
    positions = accessor(primitive.attributes.POSITION).astype(np.float64)
    for weight, target in zip(gltf.meshes[0].weights or [], primitive.targets or [], strict=True):
        positions = positions + weight * accessor(target["POSITION"])
    return positions


def test_a_glb_round_trips_mesh_uv_seams_texture_and_morph_targets():
    # a square of two triangles whose second triangle has its own UVs at the shared edge (a seam)
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [0.5, 0], [0.5, 1], [0.6, 0], [0.6, 1], [1, 1]])
    uv_faces = np.array([[0, 1, 2], [3, 4, 5]])
    targets = np.random.default_rng(0).normal(size=(2, 4, 3)) * 0.1
    texture = np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    mesh = GltfMesh(
        vertices, np.tile([0.0, 0, 1], (4, 1)), faces, uv, uv_faces, png_bytes(texture), targets,
        ["jawOpen", "eyeBlink_L"], np.array([0.25, 0.75]), 0.01,
    )  # fmt: skip
    gltf, accessor = read_glb(glb_bytes(mesh))
    primitive = gltf.meshes[0].primitives[0]
    positions = accessor(primitive.attributes.POSITION)
    assert positions.shape == (6, 3)  # vertices 0 and 2 split at the seam
    triangles = accessor(primitive.indices).reshape(-1, 3)
    assert np.allclose(positions[triangles], vertices[faces] * 0.01)
    texcoords = accessor(primitive.attributes.TEXCOORD_0)[triangles]
    assert np.allclose(texcoords, uv[uv_faces] * [1, -1] + [0, 1])  # glTF's origin is the top-left corner
    assert np.allclose(accessor(primitive.attributes.NORMAL), [0, 0, 1])
    assert gltf.meshes[0].extras["targetNames"] == ["jawOpen", "eyeBlink_L"]
    assert gltf.meshes[0].weights == [0.25, 0.75]
    shown = fitted_positions(gltf, accessor)[triangles]
    assert np.allclose(shown, (vertices + np.tensordot([0.25, 0.75], targets, 1))[faces] * 0.01, atol=1e-7)
    image = gltf.images[0]
    view = gltf.bufferViews[image.bufferView]
    stored = gltf.binary_blob()[view.byteOffset : view.byteOffset + view.byteLength]
    assert image.mimeType == "image/png" and stored == png_bytes(texture)
    assert gltf.materials[0].pbrMetallicRoughness.baseColorTexture.index == 0
    for target in primitive.targets:  # glTF requires bounds on morph-target positions too
        assert gltf.accessors[target["POSITION"]].min is not None


def test_a_model_without_uv_or_expressions_gives_a_plain_mesh():
    vertices = np.eye(3)
    mesh = GltfMesh(vertices, np.tile([0.0, 0, 1], (3, 1)), np.array([[0, 1, 2]]), None, None, None, None, [],
                    np.zeros(0), 1.0)  # fmt: skip
    gltf, accessor = read_glb(glb_bytes(mesh))
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.attributes.TEXCOORD_0 is None and primitive.targets in (None, [])
    assert np.allclose(accessor(primitive.attributes.POSITION), vertices) and not gltf.materials


@pytest.mark.parametrize("outputs", ["[glb, mesh, code]", "[glb, texture, mesh, code]"])
def test_predict_writes_a_glb_whose_default_shape_is_the_fitted_mesh(
    tmp_path,
    synthetic_photos,  # noqa: F811 (the fixture, imported)
    outputs,
):
    photos, _ = synthetic_photos
    out = tmp_path / "out"
    config = predict_config(tmp_path, photos, 0)
    main(
        ["predict", "--config", str(config), "--out", str(out), "--texture_size", "32", "--outputs", outputs]
    )
    folder = out / "face0_f0"
    gltf, accessor = read_glb((folder / "face.glb").read_bytes())
    record = json.loads((folder / "code.json").read_text())
    mesh = read_obj(folder / "reflectance.obj")
    scale = 1 / 1000  # the built-in model is in millimetres
    primitive = gltf.meshes[0].primitives[0]
    triangles = accessor(primitive.indices).reshape(-1, 3)
    shown = fitted_positions(gltf, accessor)[triangles]
    size = np.ptp(mesh["vertices"], axis=0).max() * scale
    assert np.abs(shown - mesh["vertices"][mesh["faces"]] * scale).max() < 1e-5 * size
    assert len(gltf.meshes[0].weights) == len(record["expression"])
    assert np.allclose(gltf.meshes[0].weights, list(record["expression"].values()) if isinstance(
        record["expression"], dict) else record["expression"], atol=1e-5)  # fmt: skip
    assert gltf.images and (("texture" in outputs) == (folder / "texture.png").exists())


def test_validation_logs_turnable_3d_reconstructions_to_wandb_offline(in_tmp, tiny_shards, monkeypatch):
    import wandb

    from tests.test_mofa import tiny_config

    wandb.finish()  # a run an earlier test left open in this process would be reused by the logger
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(in_tmp / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = tiny_config(in_tmp / "run", tiny_shards, max_steps=2, val_check_interval=2)
    logger = Path(__file__).resolve().parents[1] / "configs" / "logger" / "wandb.yaml"
    assert main(["fit", "--config", str(config), "--config", str(logger)]) == 0
    wandb.finish()
    (run,) = (in_tmp / "runs" / "wandb").glob("offline-run-*")
    logged = sorted(run.glob("files/media/object3D/**/*.glb"))
    assert len(logged) == 2  # meshes_3d faces of the one validation (the sanity check logs none)
    gltf, accessor = read_glb(logged[0].read_bytes())
    primitive = gltf.meshes[0].primitives[0]
    colours = accessor(primitive.attributes.COLOR_0)
    assert (
        colours.shape == accessor(primitive.attributes.POSITION).shape
        and 0 <= colours.min() <= colours.max() <= 1
    )


def test_rotations_become_continuous_unit_quaternions():
    from scipy.spatial.transform import Rotation

    from facegen.export.gltf import quaternions

    angles = np.linspace(0, 340, 18)  # about one turn: signs must stay continuous for interpolation
    matrices = Rotation.from_euler("y", angles[:, None], degrees=True).as_matrix()
    matrices[5] = Rotation.from_euler("xyz", [170, -60, 95], degrees=True).as_matrix()  # trace < 0
    computed = quaternions(matrices)
    expected = Rotation.from_matrix(matrices).as_quat()  # (x, y, z, w), glTF's order
    assert np.allclose(np.abs((computed * expected).sum(1)), 1, atol=1e-9)
    assert ((computed[1:] * computed[:-1]).sum(1) >= 0).all()
