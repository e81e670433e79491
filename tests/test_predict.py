"""`facegen predict`: refinement, UV unwrapping, the files written per face (reloaded and checked), bad input, and
reruns; on synthetic photos with known landmarks and on the shared real photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from facegen.cli import main
from facegen.data.landmarks import write_pts
from facegen.data.synth import SynthOptions, sample_code
from facegen.export import read_obj
from facegen.fitting import FitSchedule, PhotometricStage
from facegen.losses import landmark_error
from facegen.morphable.registry import load_face_model
from facegen.tasks import MoFA
from facegen.texture.unwrap import unwrap_photo
from facegen.texture.uv import UVLayout
from tests.data_helpers import face_batch

SIZE = 64
#: crop -> photo similarity of the synthetic photos: scale and offset in photo pixels.
PHOTO_SCALE, PHOTO_OFFSET, PHOTO_SIZE = 2.5, (40.0, 30.0), (260, 240)  # (W, H)


def synthetic_faces(model: MoFA, count: int, seed: int):
    """Rendered faces with their true code, landmarks and mask, at the model's image size."""
    true = sample_code(model.layout, count, SynthOptions(), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        decoded = model.decoder(true)
        rendered = model.decoder.render(decoded, true.light, background=0.35)
    return true, face_batch(rendered.image, decoded.landmarks, rendered.mask.float())


def test_refinement_without_a_trained_encoder_fits_landmarks_within_2px_at_224():
    torch.manual_seed(0)
    model = MoFA(image_size=224, depths=(1,), width=8).eval()
    _, batch = synthetic_faces(model, 2, seed=3)
    start = model(batch.image)
    refined, history, _, _ = model.fitted(
        batch, start, FitSchedule(photometric=PhotometricStage(200, lr=0.02))
    )
    before, _ = landmark_error(model.decoder(start).landmarks, batch.landmarks)
    after, _ = landmark_error(model.decoder(refined).landmarks, batch.landmarks)
    assert history[-1] < 0.1 * history[0]
    assert before.min() > 5 and after.max() < 2.0, (before, after)


def test_refinement_only_moves_the_free_parts():
    model = MoFA(image_size=SIZE, depths=(1,), width=8).eval()
    _, batch = synthetic_faces(model, 1, seed=1)
    start = model(batch.image)
    refined = model.fitted(
        batch, start, FitSchedule(photometric=PhotometricStage(3, parts=("rotation",)))
    ).code
    assert not torch.equal(refined.rotation, start.rotation)
    assert torch.equal(refined.shape, start.shape) and torch.equal(refined.light, start.light)
    with pytest.raises(ValueError, match="parts"):
        PhotometricStage(parts=("pose",))


def test_unwrap_recovers_a_known_texture_on_visible_texels():
    model = load_face_model("builtin")
    layout = UVLayout(model.faces, model.uv_coords, model.uv_faces, 64)
    assert layout.is_symmetric(model.mean)
    mofa = MoFA(image_size=192, depths=(1,), width=8)
    code = mofa.layout.zeros(1)._replace(rotation=torch.tensor([[0.1, 0.3, 0.0]]))
    decoded = mofa.decoder(code)
    u, v = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="xy")
    texture = torch.stack([u, v, 0.5 + 0.4 * torch.sin(6 * u)], 0).unsqueeze(0)  # smooth, known
    image = mofa.decoder.renderer(
        decoded.vertices,
        model.faces,
        decoded.K,
        texture=texture,
        uv_coords=model.uv_coords,
        uv_faces=model.uv_faces,
        background=0.0,
    ).image
    unwrapped = unwrap_photo(layout, image, decoded.vertices, decoded.normals, decoded.K, (192, 192))
    seen = unwrapped.visibility[0, 0] > 0.3
    assert seen.float().mean() > 0.2
    error = (unwrapped.texture[0] - texture[0]).abs().amax(0)[seen]
    assert error.median() < 0.02 and error.quantile(0.95) < 0.1
    # the render's own rasterization gives the same occlusion test as a fresh one
    fragments = mofa.decoder.render(decoded, None).fragments
    reused = unwrap_photo(
        layout, image, decoded.vertices, decoded.normals, decoded.K, (192, 192), None, fragments
    )
    assert torch.equal(reused.texture, unwrapped.texture) and torch.equal(
        reused.visibility, unwrapped.visibility
    )


def test_baking_interpolates_vertex_values_with_each_texels_barycentrics():
    model = load_face_model("builtin")
    layout = UVLayout(model.faces, model.uv_coords, model.uv_faces, 48)
    values = torch.randn(2, model.num_vertices, 4)
    baked = layout.bake(values).permute(0, 2, 3, 1)  # (B, S, S, C)
    inside = layout.mask
    corners = values[:, model.faces[layout.pix_to_face[inside]]]  # (B, N, 3, C)
    expected = (corners * layout.bary[inside][None, :, :, None]).sum(2)
    assert torch.allclose(baked[:, inside], expected, atol=1e-6) and (baked[:, ~inside] == 0).all()
    # the covered texels alone, in raster order, as the unwrapping uses them
    assert torch.equal(layout.texels, inside.flatten().nonzero()[:, 0])
    texel_values = layout.bake_texels(values)  # (B, N, C)
    assert torch.allclose(texel_values, expected, atol=1e-6)
    assert torch.equal(layout.scatter(texel_values).permute(0, 2, 3, 1), baked)


# ----------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def synthetic_photos(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Two synthetic faces pasted into larger photos with .pts files, a photo without landmarks, a broken file."""
    folder = tmp_path_factory.mktemp("photos")
    model = MoFA(image_size=SIZE, depths=(1,), width=8)
    _, batch = synthetic_faces(model, 2, seed=7)
    matrix = np.array([[PHOTO_SCALE, 0, PHOTO_OFFSET[0]], [0, PHOTO_SCALE, PHOTO_OFFSET[1]]])
    truth = {}
    for i in range(2):
        crop = (batch.image[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        photo = cv2.warpAffine(crop, matrix, PHOTO_SIZE, flags=cv2.INTER_CUBIC, borderValue=(90, 90, 90))
        Image.fromarray(photo).save(folder / f"face{i}.png")
        truth[f"face{i}"] = batch.landmarks[i].numpy() * PHOTO_SCALE + np.asarray(PHOTO_OFFSET)
        write_pts(folder / f"face{i}.pts", truth[f"face{i}"])
    Image.fromarray(np.full((50, 60, 3), 128, np.uint8)).save(folder / "no_landmarks.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder, truth


def predict_config(folder: Path, photos: Path, refine_steps: int) -> Path:
    config = {
        "trainer": {
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(folder),
        },
        "model": {
            "class_path": "facegen.tasks.MoFA",
            "init_args": {
                "image_size": SIZE,
                "depths": [1],
                "width": 8,
                "fit": {"photometric": {"steps": refine_steps, "lr": 0.03}},
            },
        },
        "data": {
            "class_path": "facegen.data.FaceDataModule",
            "init_args": {
                "predict_dir": str(photos),
                "predict_detector": "files",
                "batch_size": 4,
                "num_workers": 0,
                "image_size": SIZE,
            },
        },
    }
    path = folder / "predict.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_predict_writes_loadable_meshes_textures_coefficients_and_overlays(tmp_path, synthetic_photos):
    photos, truth = synthetic_photos
    out = tmp_path / "out"
    args = [
        "predict",
        "--config",
        str(predict_config(tmp_path, photos, 60)),
        "--out",
        str(out),
        "--texture_size",
        "64",
    ]
    main(args)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces_written"] == 2 and summary["photos_rejected"] == 2
    assert {r["reason"] for r in summary["rejected"]} == {"unreadable", "no_face"}
    model = load_face_model("builtin")
    first_losses = set()
    for key in ("face0_f0", "face1_f0"):
        face = out / key
        mesh = read_obj(face / "reflectance.obj")
        assert mesh["vertices"].shape == (model.num_vertices, 3) and len(mesh["faces"]) == len(model.faces)
        assert 0 <= mesh["colours"].min() and mesh["colours"].max() <= 1
        assert read_obj(face / "shaded.obj")["colours"].shape == (model.num_vertices, 3)
        for name, png in (("textured", "texture.png"), ("albedo", "albedo.png")):
            textured = read_obj(face / f"{name}.obj")
            assert textured["mtllib"] == [f"{name}.mtl"] and len(textured["uv_faces"]) == len(model.faces)
            assert textured["uv"].min() >= 0 and textured["uv"].max() <= 1
            assert f"map_Kd {png}" in (face / f"{name}.mtl").read_text()
            assert Image.open(face / png).size == (64, 64)
        code = json.loads((face / "code.json").read_text())
        assert set(code["pose_degrees"]) == {"pitch", "yaw", "roll"} and len(code["shape"]) == 80
        assert code["refinement"]["loss_last"] < code["refinement"]["loss_first"]
        first_losses.add(code["refinement"]["loss_first"])
        fitted = np.array(code["landmarks_photo_px"])
        error = np.linalg.norm(fitted - truth[key.split("_")[0]], axis=1).mean()
        assert error < 3 * PHOTO_SCALE, error  # photo pixels: a few crop pixels after 60 refinement steps
        arrays = np.load(face / "code.npz")
        assert arrays["code_shape"].shape == (80,) and np.allclose(
            arrays["landmarks_photo"], fitted, atol=0.01
        )
        overlay = np.asarray(Image.open(face / "overlay.jpg"))
        photo = np.asarray(Image.open(photos / f"{key.split('_')[0]}.png"))
        assert overlay.shape == photo.shape
        nose = np.round(truth[key.split("_")[0]][30]).astype(int)
        far = np.abs(overlay[:8, :8].astype(int) - photo[:8, :8]).mean()  # the untouched photo (JPEG)
        near = np.abs(
            overlay[nose[1] - 2 : nose[1] + 3, nose[0] - 2 : nose[0] + 3].astype(int)
            - photo[nose[1] - 2 : nose[1] + 3, nose[0] - 2 : nose[0] + 3]
        ).mean()
        assert far < 2 and near > 10  # the render blended in at the nose
        # 3D landmarks project onto the fitted 2D ones; depth and normal maps cover the rendered face
        points = np.array(code["landmarks_3d_camera"])
        projected = points @ np.array(code["intrinsics_crop"]).T
        assert np.allclose(projected[:, :2] / projected[:, 2:], arrays["landmarks_crop"], atol=0.05)
        depth = cv2.imread(str(face / "depth.png"), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and depth.shape == (SIZE, SIZE)
        centre = np.round(arrays["landmarks_crop"][30]).astype(
            int
        )  # the nose tip: nearer than the face's mean
        assert depth[centre[1], centre[0]] > 0 and depth[depth > 0].mean() > depth[centre[1], centre[0]]
        preview = np.asarray(Image.open(face / "depth_preview.png"))  # 8-bit: viewers show the shape
        assert preview.dtype == np.uint8 and np.array_equal(preview > 0, depth > 0)
        assert preview[depth > 0].max() == 255 and preview[depth > 0].min() == 55
        assert preview[centre[1], centre[0]] > preview[depth > 0].mean()  # the nose tip is brighter
        assert code["detector"] == "pts"  # which landmarks made this face
        normals = np.asarray(Image.open(face / "normals.png")).astype(float) / 255 * 2 - 1
        assert normals[centre[1], centre[0], 2] < -0.5  # facing the camera: -z in OpenCV axes
        assert np.all(normals[depth == 0] == -1)  # black where no face
    assert len(first_losses) == 2  # each face's own objective, not the batch mean copied into both

    before = (out / "face0_f0" / "code.json").stat().st_mtime_ns
    main(args)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces_written"] == 0 and summary["faces_already_there"] == 2
    assert (out / "face0_f0" / "code.json").stat().st_mtime_ns == before
    main([*args, "--overwrite", "true"])
    assert json.loads((out / "summary.json").read_text())["faces_written"] == 2


def test_predict_from_a_trained_checkpoint(tmp_path, synthetic_photos):
    from tests.test_mofa import tiny_config  # the tiny training setup of the MoFA tests

    photos, _ = synthetic_photos
    shards = tmp_path / "shards"
    from facegen.data.synth import SynthJob

    SynthJob(
        "builtin", shards / "train", 8, samples_per_shard=8, options=SynthOptions(size=48), progress=False
    ).run()
    SynthJob(
        "builtin",
        shards / "val",
        4,
        samples_per_shard=4,
        seed=1,
        options=SynthOptions(size=48),
        progress=False,
    ).run()
    training = tiny_config(tmp_path / "fit", shards, max_steps=2)
    main(["fit", "--config", str(training)])
    (checkpoint,) = (tmp_path / "fit").rglob("last.ckpt")
    out = tmp_path / "out"
    photo_data = ["--data.init_args.predict_dir", str(photos), "--data.init_args.predict_detector", "files"]
    run = ["--config", str(training), "--ckpt_path", str(checkpoint), *photo_data, "--out", str(out)]
    main(["predict", *run, "--model.init_args.fit", "null", "--texture_size", "32"])
    # predicting with the training config opens no log version; its config is kept beside the predictions
    assert [p.name for p in (tmp_path / "fit" / "runs" / "mofa").iterdir()] == ["version_0"]
    assert yaml.safe_load((out / "config.yaml").read_text())["ckpt_path"] == str(checkpoint)
    code = json.loads((out / "face0_f0" / "code.json").read_text())
    # the predict config's refine.steps 0 applies, not the training config's (refine stays out of checkpoints)
    assert "refinement" not in code and all(math.isfinite(v) for v in code["pose_degrees"].values())
    # the untrained encoder predicts exactly the frontal mean face; the checkpoint's trained head does not
    assert any(v != 0 for v in code["pose_degrees"].values())


def test_predict_on_the_shared_photos(tmp_path, assets):
    photos = assets / "photos" / "annotated"
    out = tmp_path / "out"
    config = predict_config(tmp_path, photos, 20)
    main(["predict", "--config", str(config), "--out", str(out), "--texture_size", "64"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces_written"] == 4, summary
    for face in (out / key for key in summary["written"]):
        assert {"reflectance.obj", "textured.obj", "texture.png", "overlay.jpg", "code.npz"} <= {
            p.name for p in face.iterdir()
        }
        code = json.loads((face / "code.json").read_text())
        photo = Image.open(code["photo_path"])
        assert Image.open(face / "overlay.jpg").size == photo.size
        landmarks = np.array(code["landmarks_photo_px"])
        assert (landmarks >= -50).all() and (landmarks[:, 0] <= photo.size[0] + 50).all()


def test_outputs_choose_the_files_and_done_faces_are_skipped_before_any_computation(
    tmp_path, synthetic_photos, monkeypatch
):
    photos, _ = synthetic_photos
    out = tmp_path / "out"
    args = [
        "predict",
        "--config",
        str(predict_config(tmp_path, photos, 0)),
        "--out",
        str(out),
        "--texture_size",
        "32",
        "--outputs",
        "[mesh, code]",
    ]
    assert main(args) == 0
    files = {p.name for p in (out / "face0_f0").iterdir()}
    assert files == {"reflectance.obj", "shaded.obj", "code.npz", "code.json"}
    assert json.loads((out / "summary.json").read_text())["outputs"] == ["code", "mesh"]
    (out / "face1_f0" / "code.json").unlink()  # as if that face had been interrupted

    encoded = []
    original = MoFA.forward
    monkeypatch.setattr(
        MoFA, "forward", lambda self, image: encoded.append(image.shape[0]) or original(self, image)
    )
    assert main([*args[:-2], "--outputs", "[texture, overlay]"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["already_there"] == ["face0_f0"] and summary["written"] == ["face1_f0"]
    assert sum(encoded) == 1  # only the unfinished face reached the encoder
    assert {"texture.png", "visibility.png", "textured.obj", "overlay.jpg"} <= {
        p.name for p in (out / "face1_f0").iterdir()
    }
    assert not (out / "face1_f0" / "albedo.png").exists()


def test_the_photo_config_fits_ict_to_the_shared_photos_without_training(
    tmp_path, assets, ict_facegen_npz, monkeypatch
):
    """The README's photo command: ICT-FaceKit by name (from the cache), no checkpoint, the staged fit."""
    from facegen.data.landmarks import read_pts
    from facegen.evaluation.aflw2000 import box_nme

    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "ict-face.r3.npz").write_bytes(ict_facegen_npz.read_bytes())
    monkeypatch.setenv("FACEGEN_CACHE", str(tmp_path / "cache"))
    photos, out = assets / "photos" / "annotated", tmp_path / "out"
    config = str(Path(__file__).parents[1] / "configs" / "photos_ict.yaml")
    args = ["predict", "--config", config, "--data.init_args.predict_dir", str(photos), "--out", str(out)]
    main([*args, "--outputs", "[code]", "--trainer.enable_progress_bar", "false"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces_written"] == 4 and summary["fit_diverged"] == []
    for face in summary["written"]:
        code = json.loads((out / face / "code.json").read_text())
        truth = read_pts(photos / f"{code['source'].rsplit('.', 1)[0]}.pts")
        # the fit follows the annotated landmarks it was given (1.7 % on average in benchmarks/fitting.py)
        assert box_nme(np.array(code["landmarks_photo_px"]), truth) < 0.03
        assert code["refinement"]["loss_last"] < code["refinement"]["loss_first"]
        # both conventions: the inner points are the same vertices, the 2D jaw follows the outline
        model_68, outline_68 = np.array(code["landmarks_photo_px"]), np.array(code["landmarks_2d_photo_px"])
        np.testing.assert_allclose(outline_68[17:], model_68[17:], atol=0.01)
        assert box_nme(outline_68, truth) < 0.03
        weights = np.array(list(code["expression"].values()))  # ICT's ARKit blendshapes: within [0, 1]
        assert len(weights) == 53 and weights.min() >= 0 and weights.max() <= 1


def test_bad_photos_are_reported_and_the_good_face_is_fitted(tmp_path, synthetic_photos):
    """A 1x1 image, NaN landmarks and a photo without landmarks beside a good one, through the staged fit."""
    photos, _ = synthetic_photos
    folder = tmp_path / "photos"
    folder.mkdir()
    for suffix in (".png", ".pts"):
        (folder / f"good{suffix}").write_bytes((photos / f"face0{suffix}").read_bytes())
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    Image.fromarray(np.full((80, 80, 3), 100, np.uint8)).save(folder / "nan.png")
    (folder / "nan.pts").write_text("version: 1\nn_points: 68\n{\n" + "nan nan\n" * 68 + "}\n")
    config = predict_config(tmp_path, folder, 5)
    spec = yaml.safe_load(config.read_text())
    spec["model"]["init_args"]["fit"].update(
        pose={"closed_form": True, "iterations": 2}, landmarks={"iterations": 3}
    )
    config.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    main(["predict", "--config", str(config), "--out", str(out), "--outputs", "[code]"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["written"] == ["good_f0"] and summary["fit_diverged"] == []
    details = {reject["photo"]: reject["detail"] for reject in summary["rejected"]}
    assert set(details) == {"dot.png", "nan.png"}, summary["rejected"]
    assert details["dot.png"] == "no landmark file beside the photo"
    assert details["nan.png"] == "nan.pts: landmarks contain NaN or inf"  # the bad file, named
    code = json.loads((out / "good_f0" / "code.json").read_text())
    assert code["refinement"]["loss_last"] < code["refinement"]["loss_first"]


def test_the_shape_from_shading_preset_replaces_a_configs_schedule_from_the_command_line(
    tmp_path, synthetic_photos
):
    """``--model.init_args.fit configs/fit/shape_from_shading.yaml`` after a predict config: the fit's stage 3
    moves the shape by Levenberg-Marquardt, and the saved run config says so."""
    photos, _ = synthetic_photos
    preset = Path(__file__).parents[1] / "configs" / "fit" / "shape_from_shading.yaml"
    codes = {}
    for name, extra in (("base", []), ("shading", ["--model.init_args.fit", str(preset)])):
        out = tmp_path / name
        (tmp_path / name).mkdir()
        config = predict_config(tmp_path / name, photos, 0)
        main(["predict", "--config", str(config), *extra, "--out", str(out), "--outputs", "[code]"])
        codes[name] = json.loads((out / "face0_f0" / "code.json").read_text())
        saved = yaml.safe_load((out / "config.yaml").read_text())["model"]["init_args"]["fit"]["photometric"]
        assert saved["solver"] == ("levenberg" if extra else "adam")
    assert codes["base"]["shape"] == [0.0] * 80  # no stage moved the shape: the untrained encoder's mean face
    assert np.abs(np.asarray(codes["shading"]["shape"])).max() > 0.01
