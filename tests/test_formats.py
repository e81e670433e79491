"""Every face-model reader, on tiny files written here in the exact format users download, and on ICT-FaceKit."""

from __future__ import annotations

import json
import pickle
import sys
import types

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from facegen.cli import main
from facegen.morphable.model import ModelFileError, MorphableModel
from facegen.morphable.registry import convert

RNG = np.random.default_rng(7)


def dome(rows: int = 9, cols: int = 10):
    """A dome mesh (V, 3) facing +Z with counter-clockwise (outward) triangles (F, 3), 0-based."""
    u, v = np.meshgrid(np.linspace(-0.7, 0.7, cols), np.linspace(-0.7, 0.7, rows))
    vertices = np.stack([u, v, np.sqrt(1 - 0.5 * (u**2 + v**2))], -1).reshape(-1, 3)
    index = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = (
        index[:-1, :-1].ravel(),
        index[:-1, 1:].ravel(),
        index[1:, 1:].ravel(),
        index[1:, :-1].ravel(),
    )
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces


def orthonormal(rows: int, cols: int) -> np.ndarray:
    return np.linalg.qr(RNG.standard_normal((rows, cols)))[0]


def interleave(per_vertex: np.ndarray) -> np.ndarray:
    return per_vertex.reshape(-1)


def assert_same_geometry(model: MorphableModel, mean_mm, shape_dirs_mm, expr_dirs_mm, n=3):
    """Model vertices for random coefficients == mean + dirs @ coeffs (dirs: (3V, K) scaled by one sd, mm)."""
    shape = torch.randn(n, shape_dirs_mm.shape[1], dtype=torch.float64)
    expression = torch.randn(n, expr_dirs_mm.shape[1], dtype=torch.float64)
    expected = mean_mm.reshape(1, -1) + shape.numpy() @ shape_dirs_mm.T + expression.numpy() @ expr_dirs_mm.T
    vertices = model.double()(shape=shape, expression=expression).vertices.reshape(n, -1).numpy()
    assert np.abs(vertices - expected).max() < 1e-6 * max(1.0, np.abs(expected).max())


def faces_outward(model: MorphableModel) -> bool:
    v, f = model.mean.double().numpy(), model.faces.numpy()
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return (normals[:, 2] > 0).mean() > 0.9  # the dome looks along +Z


# ------------------------------------------------------------------------------------------- BFM 2009
@pytest.fixture
def bfm2009_folder(tmp_path):
    vertices, faces = dome()
    num_full, k_shape, k_tex, k_exp = len(vertices), 6, 5, 4
    keep = np.sort(
        RNG.choice(num_full, num_full - 7, replace=False)
    )  # the expression basis covers fewer vertices
    um = 1e5  # the dome is 1 unit = 10 cm in micrometres
    mat = {
        "shapeMU": (interleave(vertices) * um).astype(np.float32).reshape(-1, 1),
        "shapePC": orthonormal(3 * num_full, k_shape).astype(np.float32),
        "shapeEV": np.linspace(5e3, 1e3, k_shape).astype(np.float32).reshape(-1, 1),
        "texMU": RNG.uniform(50, 200, (3 * num_full, 1)).astype(np.float32),
        "texPC": orthonormal(3 * num_full, k_tex).astype(np.float32),
        "texEV": np.linspace(40, 10, k_tex).astype(np.float32).reshape(-1, 1),
        "tl": (faces[:, [0, 2, 1]] + 1).astype(np.float64),  # clockwise: the reader must orient it outward
    }
    scipy.io.savemat(tmp_path / "01_MorphableModel.mat", mat)
    exp_pc = orthonormal(3 * len(keep), k_exp).astype(np.float32)
    with (tmp_path / "Exp_Pca.bin").open("wb") as handle:
        np.array([k_exp], np.int32).tofile(handle)
        np.zeros(3 * len(keep), np.float32).tofile(handle)
        exp_pc.T.copy().tofile(handle)  # one row per component
    exp_std = np.linspace(3e3, 1e3, k_exp)
    np.savetxt(tmp_path / "std_exp.txt", exp_std)
    scipy.io.savemat(
        tmp_path / "BFM_exp_idx.mat", {"trimIndex": (keep + 1).astype(np.float64).reshape(-1, 1)}
    )
    landmarks = RNG.choice(keep, 68)
    np.savetxt(tmp_path / "landmarks68.txt", landmarks, fmt="%d")
    return tmp_path, mat, keep, exp_pc, exp_std, landmarks


def test_bfm2009_reader(bfm2009_folder):
    folder, mat, keep, exp_pc, exp_std, landmarks = bfm2009_folder
    model = convert("bfm2009", folder, landmarks=folder / "landmarks68.txt")
    coords = (3 * keep[:, None] + np.arange(3)).reshape(-1)
    assert model.num_vertices == len(keep) and model.units == "mm"
    assert_same_geometry(
        model,
        mat["shapeMU"][coords, 0].astype(np.float64) / 1e3,
        (mat["shapePC"] * mat["shapeEV"].T)[coords].astype(np.float64) / 1e3,
        exp_pc.astype(np.float64) * exp_std / 1e3,
    )
    assert np.allclose(model.albedo_mean.numpy().reshape(-1), mat["texMU"][coords, 0] / 255, atol=1e-6)
    assert torch.equal(
        model.mean[model.landmark_indices], model.mean[torch.as_tensor(np.searchsorted(keep, landmarks))]
    )
    assert faces_outward(model)


def test_bfm2009_missing_files_say_where_to_get_them(bfm2009_folder):
    folder = bfm2009_folder[0]
    (folder / "Exp_Pca.bin").unlink()
    with pytest.raises(FileNotFoundError, match="Exp_Pca.bin.*Guo"):
        convert("bfm2009", folder, landmarks=folder / "landmarks68.txt")
    with pytest.raises(FileNotFoundError, match="registration"):
        convert("bfm2009", folder / "nowhere", landmarks=folder / "landmarks68.txt")
    with pytest.raises(FileNotFoundError, match="68-landmark"):
        convert("bfm2009", folder)


def test_bfm2009_wrong_field_is_named(bfm2009_folder):
    folder, mat = bfm2009_folder[:2]
    scipy.io.savemat(folder / "01_MorphableModel.mat", {k: v for k, v in mat.items() if k != "texEV"})
    with pytest.raises(ModelFileError, match="'texEV'"):
        convert("bfm2009", folder, landmarks=folder / "landmarks68.txt")
    (folder / "Exp_Pca.bin").write_bytes(
        np.array([3], np.int32).tobytes() + np.zeros(10, np.float32).tobytes()
    )
    scipy.io.savemat(folder / "01_MorphableModel.mat", mat)
    with pytest.raises(ModelFileError, match="Exp_Pca.bin"):
        convert("bfm2009", folder, landmarks=folder / "landmarks68.txt")


# ------------------------------------------------------------------------------ Deep3DFaceRecon front
def test_bfm_front_reader(tmp_path):
    vertices, faces = dome()
    n = len(vertices)
    id_base, ex_base, tex_base = (RNG.standard_normal((3 * n, k)) * 0.01 for k in (8, 6, 5))
    mat = {
        "meanshape": interleave(vertices).reshape(1, -1).astype(np.float32),  # decimetres
        "idBase": id_base.astype(np.float32),
        "exBase": ex_base.astype(np.float32),
        "meantex": RNG.uniform(0, 255, (1, 3 * n)).astype(np.float32),
        "texBase": tex_base.astype(np.float32),
        "tri": (faces + 1).astype(np.float64),
        "keypoints": (RNG.choice(n, 68) + 1).astype(np.float64).reshape(1, -1),
        "skinmask": (RNG.uniform(size=(1, n)) > 0.3).astype(np.float64),
    }
    scipy.io.savemat(tmp_path / "BFM_model_front.mat", mat)
    model = convert("bfm-front", tmp_path)
    assert_same_geometry(
        model,
        mat["meanshape"][0].astype(np.float64) * 100,
        mat["idBase"].astype(np.float64) * 100,
        mat["exBase"].astype(np.float64) * 100,
    )
    assert torch.equal(model.landmark_indices, torch.as_tensor(mat["keypoints"][0] - 1).long())
    assert torch.equal(model.mask("skin"), torch.as_tensor(mat["skinmask"][0] > 0))
    albedo = model(albedo=torch.ones(1, 5, dtype=torch.float64)).albedo.reshape(-1).numpy()
    assert np.allclose(
        albedo, (mat["meantex"][0] + mat["texBase"].astype(np.float64).sum(1)) / 255, atol=1e-5
    )
    assert faces_outward(model)


# -------------------------------------------------------------------------------------------- BFM 2017
def test_bfm2017_reader(tmp_path):
    vertices, faces = dome()
    n = len(vertices)
    path = tmp_path / "model2017-1_face12_nomouth.h5"
    parts = {}
    with h5py.File(path, "w") as handle:
        for name, k, scale in (("shape", 7, 100.0), ("expression", 5, 0.0), ("color", 4, 0.5)):
            mean = interleave(vertices * 100) if name == "shape" else RNG.uniform(0, scale + 0.1, 3 * n)
            basis, variance = orthonormal(3 * n, k), np.linspace(9, 1, k)
            handle[f"{name}/model/mean"] = mean.astype(np.float32)
            handle[f"{name}/model/pcaBasis"] = basis.astype(np.float32)
            handle[f"{name}/model/pcaVariance"] = variance.astype(np.float32)
            parts[name] = (
                mean.astype(np.float32).astype(np.float64),
                basis.astype(np.float32) * np.sqrt(variance),
            )
        handle["shape/representer/points"] = (vertices * 100).T.astype(np.float32)
        handle["shape/representer/cells"] = faces.T.astype(np.uint32)
    np.save(tmp_path / "lm.npy", RNG.choice(n, 68))
    model = convert("bfm2017", path, landmarks=tmp_path / "lm.npy")
    assert_same_geometry(
        model, parts["shape"][0] + parts["expression"][0], parts["shape"][1], parts["expression"][1]
    )
    assert model.n_albedo == 4 and faces_outward(model)


def test_bfm2017_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_text("nope")
    with pytest.raises(ModelFileError, match="not a readable HDF5"):
        convert("bfm2017", tmp_path / "x.h5", landmarks=tmp_path / "lm.npy")


# ----------------------------------------------------------------------------------------------- FLAME
def _write_flame_pickle(path, data):
    """Pickle like FLAME's distribution: arrays wrapped in chumpy ``Ch`` objects, with chumpy absent later."""
    chumpy, chumpy_ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    chumpy_ch.Ch = Ch
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": chumpy_ch})
    try:
        wrapped = {k: Ch(v) if k in ("v_template", "shapedirs") else v for k, v in data.items()}
        path.write_bytes(pickle.dumps(wrapped, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_flame_reader_without_chumpy(tmp_path):
    vertices, faces = dome()
    n = len(vertices)
    shapedirs = RNG.standard_normal((n, 3, 310)) * 1e-3  # metres: 300 shape + 10 expression
    _write_flame_pickle(
        tmp_path / "generic_model.pkl",
        {
            "v_template": vertices * 0.1,
            "shapedirs": shapedirs,
            "f": faces.astype(np.uint32),
            "posedirs": np.zeros((n, 3, 36)),
            "kintree_table": np.zeros((2, 5), np.int64),
        },
    )
    face_idx, bary = RNG.choice(len(faces), 68), RNG.dirichlet(np.ones(3), 68)
    np.save(
        tmp_path / "landmark_embedding.npy",
        np.array({"full_lmk_faces_idx": face_idx[None], "full_lmk_bary_coords": bary[None]}, dtype=object),
    )
    assert "chumpy" not in sys.modules
    model = convert("flame", tmp_path)
    flat = shapedirs.reshape(3 * n, -1) * 1000
    assert_same_geometry(model, vertices.reshape(-1) * 100, flat[:, :300], flat[:, 300:])
    assert (model.n_shape, model.n_expression, model.has_albedo) == (300, 10, False)
    assert torch.equal(model.landmark_indices, torch.as_tensor(faces[face_idx, bary.argmax(1)]).int().long())


def test_flame_missing_embedding_is_explained(tmp_path):
    vertices, faces = dome()
    _write_flame_pickle(
        tmp_path / "generic_model.pkl",
        {"v_template": vertices, "shapedirs": np.zeros((len(vertices), 3, 301)), "f": faces},
    )
    with pytest.raises(FileNotFoundError, match="landmark_embedding.npy.*DECA"):
        convert("flame", tmp_path / "generic_model.pkl")


# ---------------------------------------------------------------------------------- ICT-FaceKit folder
def _write_obj(path, vertices, uv=None, quads=None):
    lines = ["# ICT FaceKit style"] + [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    if uv is not None:
        lines += [f"vt {s:.6f} {t:.6f}" for s, t in uv]
        lines += ["f " + " ".join(f"{a + 1}/{b + 1}" for a, b in zip(q, q, strict=True)) for q in quads]
    path.write_text("\n".join(lines) + "\n")


def write_ict_folder(folder):
    """A FaceXModel folder in ICT-FaceKit's format (a 120 x 100 grid, two identity modes, jawOpen); returns
    (neutral (12000, 3), quads, uv, modes)."""
    cols, rows = 120, 100  # 12,000 vertices: more than the 11,248 of the head region
    u, v = np.meshgrid(np.linspace(-1, 1, cols), np.linspace(-1, 1, rows))
    neutral = np.stack([u, v, np.cos(u)], -1).reshape(-1, 3)
    index = np.arange(rows * cols).reshape(rows, cols)
    quads = np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], -1).reshape(-1, 4)
    uv = np.stack([(u + 1) / 2, (v + 1) / 2], -1).reshape(-1, 2)
    folder.mkdir(parents=True, exist_ok=True)
    _write_obj(folder / "generic_neutral_mesh.obj", neutral, uv, quads)
    modes = {f"identity{k:03d}": RNG.standard_normal(neutral.shape) * 0.01 for k in range(2)}
    modes.update({"jawOpen": RNG.standard_normal(neutral.shape) * 0.01})
    for name, delta in modes.items():
        _write_obj(folder / f"{name}.obj", neutral + delta)
    landmarks = RNG.choice(9409, 68).tolist()
    (folder / "vertex_indices.json").write_text(
        json.dumps({"expressions": ["eyeBlink_L", "jawOpen"], "idx_to_landmark_verts": landmarks})
    )
    return neutral, quads, uv, modes


def test_ict_folder_reader_synthetic(tmp_path):
    neutral, quads, uv, modes = write_ict_folder(tmp_path)
    model = convert("ict", tmp_path)
    assert model.num_vertices == 11248 and model.units == "cm" and model.expression_names == ["jawOpen"]
    kept = (quads < 11248).all(1)
    assert model.num_faces == 2 * kept.sum()
    assert np.array_equal(model.faces[:2].numpy(), [quads[0, [0, 1, 2]], quads[0, [0, 2, 3]]])
    assert np.abs(model.shape_basis[1].numpy() - modes["identity001"][:11248]).max() < 1e-5
    assert np.abs(model.expression_basis[0].numpy() - modes["jawOpen"][:11248]).max() < 1e-5
    corner_uv = model.uv_coords[model.uv_faces[0]].numpy()
    assert np.allclose(corner_uv, uv[quads[0, [0, 1, 2]]], atol=1e-6)
    face = convert("ict", tmp_path, region="face")
    assert face.num_vertices == 9409 and int(face.faces.max()) < 9409


def test_ict_landmarks_are_the_calibrated_ones_unless_asked_otherwise(tmp_path):
    from facegen.morphable.formats.ict import CALIBRATED_LANDMARKS
    from facegen.morphable.model import ModelFileError

    write_ict_folder(tmp_path / "ict")
    own = json.loads((tmp_path / "ict" / "vertex_indices.json").read_text())["idx_to_landmark_verts"]
    shipped = np.loadtxt(CALIBRATED_LANDMARKS, dtype=np.int64)
    assert shipped.shape == (68,) and CALIBRATED_LANDMARKS.read_text().startswith(
        "# facegen landmark vertices"
    )
    calibrated = convert("ict", tmp_path / "ict", region="face")
    assert np.array_equal(calibrated.landmark_indices.numpy(), shipped)
    assert np.array_equal(convert("ict", tmp_path / "ict", landmarks="ict").landmark_indices.numpy(), own)
    given = tmp_path / "mine.txt"
    given.write_text("# my detector\n" + "\n".join(str(i) for i in range(68)))
    assert convert("ict", tmp_path / "ict", landmarks=str(given)).landmark_indices.tolist() == list(range(68))
    given.write_text("\n".join(["9409"] * 68))
    with pytest.raises(ModelFileError, match="mine.txt: landmark indices must be 0-based and below 9409"):
        convert("ict", tmp_path / "ict", region="face", landmarks=str(given))


# ------------------------------------------------------------------------------ the real ICT-FaceKit
def test_ict_npz_matches_reference_vertices(ict_npz):
    reference = np.load(ict_npz)
    model = convert("ict", ict_npz, landmarks="ict")
    shape, expression = torch.randn(4, 100), torch.rand(4, 53)
    vertices = model(shape=shape, expression=expression).vertices.numpy()
    expected = (
        reference["vertices_mean"][None].astype(np.float64)
        + np.einsum("bk,kvc->bvc", shape.numpy(), reference["shape_basis"].astype(np.float64))
        + np.einsum("bk,kvc->bvc", expression.numpy(), reference["expression_basis"].astype(np.float64))
    )
    assert np.abs(vertices - expected).max() < 1e-4  # centimetres
    assert np.array_equal(model.faces.numpy(), reference["faces"])
    assert np.array_equal(model.uv_faces.numpy(), reference["uv_faces"])
    assert np.array_equal(model.landmark_indices.numpy(), reference["landmark_indices"])
    assert torch.equal(model.mask("face"), torch.as_tensor(reference["face_area_mask"]))
    assert torch.equal(model.mask("skin"), torch.as_tensor(reference["narrow_face_mask"]))


def test_ict_raw_folder_matches_npz(assets, ict_npz):
    reference = np.load(ict_npz)
    model = convert("ict", assets / "ict" / "raw")
    assert np.abs(model.mean.numpy() - reference["vertices_mean"]).max() < 1e-5
    assert np.array_equal(model.faces.numpy(), reference["faces"])
    assert np.array_equal(model.uv_faces.numpy(), reference["uv_faces"])
    assert np.allclose(model.uv_coords.numpy(), reference["uv_coords"])
    assert np.abs(model.shape_basis.numpy() - reference["shape_basis"][:2]).max() < 1e-5
    names = list(reference["expression_names"])
    for k, name in enumerate(model.expression_names):
        assert (
            np.abs(model.expression_basis[k].numpy() - reference["expression_basis"][names.index(name)]).max()
            < 1e-5
        )


def test_model_cli_convert_and_info(ict_npz, tmp_path, capsys):
    out = tmp_path / "ict.npz"
    assert (
        main(["model", "convert", "ict", "--source", str(ict_npz), "--out", str(out), "--n-shape", "40"]) == 0
    )
    assert main(["model", "info", str(out), "--json", "true"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["vertices"] == 11248 and info["shape_components"] == 40 and info["units"] == "cm"
    assert info["has_uv"] and not info["has_albedo"] and info["file_bytes"] == out.stat().st_size


def test_model_cli_errors_are_clear(tmp_path, capsys):
    args = [
        "model",
        "convert",
        "flame",
        "--source",
        str(tmp_path / "absent.pkl"),
        "--out",
        str(tmp_path / "m.npz"),
    ]
    assert main(args) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("facegen: error: FLAME model not found") and "flame.is.tue.mpg.de" in err
    assert not (tmp_path / "m.npz").exists()


def test_a_named_model_is_fetched_converted_and_cached_on_first_use(tmp_path, monkeypatch):
    from facegen.morphable import download
    from facegen.morphable.registry import load_face_model

    fetched = []

    def fake_download(cache):
        fetched.append(cache)
        write_ict_folder(tmp_path / "FaceXModel")
        return tmp_path / "FaceXModel"

    monkeypatch.setenv("FACEGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "download_ict", fake_download)
    model = load_face_model("ict-face")
    assert model.num_vertices == 9409 and (tmp_path / "cache" / "models" / "ict-face.r3.npz").is_file()
    assert load_face_model("ict-face").num_vertices == 9409 and fetched == [tmp_path / "cache"]  # cached
    monkeypatch.setenv("FACEGEN_CACHE", str(tmp_path / "offline"))

    def offline(cache):
        raise download.DownloadError("could not download the archive: no network")

    monkeypatch.setattr(download, "download_ict", offline)
    with pytest.raises(
        download.DownloadError, match="facegen model convert ict .*offline/models/ict-face.r3.npz"
    ):
        load_face_model("ict-face")


def test_model_download_offline_names_url_and_offline_path(tmp_path, monkeypatch, capsys):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["model", "download", "ict", "--cache", str(tmp_path)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "ICT-FaceKit/archive" in err and "facegen model convert ict --source" in err
    assert not list(tmp_path.glob("*.part"))
