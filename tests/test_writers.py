"""The prediction writers read only the typed predictions (and the face model they are given): hand-made
predictions, no task, no Trainer."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from facegen.callbacks import FaceExporter, TextureExporter
from facegen.data.batch import Reject
from facegen.decoder import FaceDecoder
from facegen.export import read_obj
from facegen.export.files import write_png_atomic
from facegen.morphable.builtin import builtin_model
from facegen.predictions import GeneratedTextures, ReconstructedTextures, Reconstruction
from tests.data_helpers import face_batch

SIZE = 32
TRAINER = SimpleNamespace(world_size=1, global_rank=0)


def reconstruction(count: int = 2) -> Reconstruction:
    """The built-in model's mean face turned by a known yaw per face, as a task would predict it."""
    model = builtin_model()
    decoder = FaceDecoder(model, (SIZE, SIZE))
    code = decoder.layout().zeros(count)
    code = code._replace(rotation=torch.tensor([[0.0, 0.1 * (i + 1), 0.0] for i in range(count)]))
    code = code._replace(light=torch.full_like(code.light, 0.1))
    decoded = decoder(code)
    rotation, translation = decoder.camera_pose(code)
    batch = face_batch(torch.rand(count, 3, SIZE, SIZE), decoded.landmarks + 0.5)
    batch.rejects = [
        Reject("broken.jpg", "unreadable", "truncated file"),
        Reject("crowd.jpg", "face_dropped", "a 20 px face < --min-face-size 40"),
    ]
    return Reconstruction(
        batch=batch,
        code=code,
        decoded=decoded,
        landmarks_2d=decoded.landmarks + 1.0,  # stands for the silhouette-aware points
        vertices_model=model(shape=code.shape, expression=code.expression).vertices.expand(count, -1, -1),
        camera_rotation=rotation,
        camera_translation=translation,
        shaded=decoder.vertex_colours(decoded, code.light),
        render=decoder.render(decoded, code.light, background=0.0),
        fit_loss=[3.0, 2.0, 1.0],
        face_loss=torch.tensor([[3.5, 1.5], [2.5, 0.5], [4.0, 1.0]])[:count],
        fit_diverged=torch.tensor([False, True, False])[:count],
    )


def write_all(writer, prediction, batch=None) -> None:
    writer.on_predict_start(TRAINER, None)
    if batch is not None:
        writer.on_predict_batch_start(TRAINER, None, batch, 0)
    writer.write(prediction)
    writer.on_predict_end(TRAINER, None)


def test_face_exporter_writes_a_hand_made_reconstruction(tmp_path):
    prediction = reconstruction()
    model = builtin_model()
    write_all(FaceExporter(str(tmp_path), model, texture_size=32), prediction, prediction.batch)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["written"] == ["face0", "face1"] and summary["refinement_steps"] == 3
    assert summary["rejected"] == [
        {"photo": "broken.jpg", "reason": "unreadable", "detail": "truncated file"}
    ]
    assert summary["faces_dropped"] == 1 and summary["dropped"][0]["photo"] == "crowd.jpg"
    assert summary["faces_fit_diverged"] == 1 and summary["fit_diverged"][0]["face"] == "face1"
    for i, name in enumerate(summary["written"]):
        mesh = read_obj(tmp_path / name / "reflectance.obj")
        assert np.allclose(mesh["vertices"], prediction.vertices_model[i].numpy(), atol=1e-5)
        assert (mesh["faces"] == model.faces.numpy()).all()
        record = json.loads((tmp_path / name / "code.json").read_text())
        assert record["pose_degrees"]["yaw"] == pytest.approx(np.degrees(0.1 * (i + 1)), abs=1e-4)
        assert np.allclose(
            record["camera_from_model"]["rotation"], prediction.camera_rotation[i].numpy(), atol=1e-5
        )
        first, last = prediction.face_loss[i].tolist()  # each face's own, not the batch mean
        assert record["refinement"] == {"steps": 3, "loss_first": first, "loss_last": last}
        # no photo transform recorded: landmarks are in crop pixels
        assert np.allclose(record["landmarks_photo_px"], prediction.decoded.landmarks[i].numpy(), atol=0.01)
        assert np.allclose(record["landmarks_2d_photo_px"], prediction.landmarks_2d[i].numpy(), atol=0.01)
        assert Image.open(tmp_path / name / "texture.png").size == (32, 32)


def test_an_implausible_fit_is_listed_with_its_reason_and_not_written(tmp_path):
    prediction = reconstruction()._replace(fit_implausible=[None, "the fitted face is turned 120 degrees"])
    write_all(FaceExporter(str(tmp_path), builtin_model(), texture_size=32), prediction, prediction.batch)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["written"] == ["face0"] and not (tmp_path / "face1").exists()
    assert summary["faces_fit_implausible"] == 1
    assert summary["fit_implausible"] == [
        {"face": "face1", "reason": "the fitted face is turned 120 degrees"}
    ]


def test_fits_far_from_their_landmarks_or_turned_away_are_implausible():
    from facegen.fitting.plausibility import implausible_fits

    detected = torch.rand(4, 68, 2) * 100
    fitted = detected + 1.0  # 1.4 px on a face of about 100: plausible
    fitted[1] += 20.0  # 28 % of the face size away
    rotation = torch.zeros(4, 3)
    rotation[2, 1] = math.radians(135)  # the back of the head
    detected[3] = float("nan")  # nothing to compare: not judged on landmarks
    reasons = implausible_fits(detected, fitted, rotation)
    assert reasons[0] is None and reasons[3] is None
    # 20 * sqrt(2) px on a face of about 93 px
    assert reasons[1].startswith("the fitted landmarks lie 3") and "at most 5 %" in reasons[1]
    assert reasons[2] == "the fitted face is turned 135 degrees, away from the camera"
    confidence = torch.full((4, 68), 0.9)
    confidence[0] = 0.05  # every point doubted
    confidence[1, :60] = 0.01  # most points doubted, but the mean is above the limit
    reasons = implausible_fits(detected, fitted, rotation, confidence)
    assert reasons[0].startswith("the detector's landmarks are all of low confidence (mean 0.05")
    assert reasons[1].startswith("the fitted landmarks lie 3")


def test_face_exporter_drops_repeated_and_finished_faces_from_the_batch_before_the_task_runs(tmp_path):
    prediction = reconstruction(3)
    batch = prediction.batch
    batch.key[2] = batch.key[0]  # a repeated key
    (tmp_path / "face1").mkdir()
    (tmp_path / "face1" / "code.json").write_text("{}")  # finished in an earlier run
    writer = FaceExporter(str(tmp_path), builtin_model(), outputs=["code"])
    writer.on_predict_start(TRAINER, None)
    writer.on_predict_batch_start(TRAINER, None, batch, 0)
    assert batch.key == ["face0"] and batch.image.shape[0] == 1 and len(batch.meta) == 1
    assert writer.existing == ["face1"] and writer.failed[0]["face"] == "face0"


def test_texture_exporter_writes_generated_and_reconstructed_textures(tmp_path):
    model = builtin_model()
    texture = torch.zeros(2, 3, 8, 8)
    texture[:, 0] = 1.0  # red
    views = torch.rand(2, 3, SIZE, 3 * SIZE)
    vertices = model.mean.expand(2, -1, -1)
    write_all(
        TextureExporter(str(tmp_path / "gen"), model),
        GeneratedTextures([5, 9], texture, vertices, views, 0.7),
    )
    assert json.loads((tmp_path / "gen" / "seed_000009" / "generated.json").read_text()) == {
        "seed": 9,
        "truncation": 0.7,
    }
    pixels = np.asarray(Image.open(tmp_path / "gen" / "seed_000005" / "texture.png"))
    assert pixels.shape == (8, 8, 3) and (pixels == [255, 0, 0]).all()
    assert Image.open(tmp_path / "gen" / "seed_000005" / "views.png").size == (3 * SIZE, SIZE)
    mesh = read_obj(tmp_path / "gen" / "seed_000005" / "textured.obj")
    assert np.allclose(mesh["vertices"], model.mean.numpy(), atol=1e-5) and mesh["uv"].shape[1] == 2

    batch = face_batch(torch.rand(2, 3, SIZE, SIZE), torch.zeros(2, 68, 2))
    batch.meta = [{"source": "a.jpg"}, {"source": "b.jpg"}]
    metrics = {
        "psnr": torch.tensor([20.0, 25.0]),
        "ssim": torch.tensor([0.5, 0.6]),
        "l1": torch.tensor([0.1, 0.2]),
    }
    fitted = ReconstructedTextures(
        batch, texture, vertices, batch.image, views[..., : 2 * SIZE], [2.0, 1.5], metrics
    )
    write_all(TextureExporter(str(tmp_path / "fit"), model, texture_size=16), fitted)
    record = json.loads((tmp_path / "fit" / "face1" / "fit.json").read_text())
    assert record["source"] == "b.jpg" and record["psnr"] == 25.0 and record["loss_last"] == 1.5
    assert Image.open(tmp_path / "fit" / "face1" / "texture.png").size == (16, 16)
    assert Image.open(tmp_path / "fit" / "face1" / "side_by_side.png").size == (4 * SIZE, SIZE)


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 256, (37, 53), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 65536, (37, 53), dtype=np.uint16),
    ],
    ids=["rgb", "grey", "16-bit"],
)
def test_fast_png_settings_stay_lossless(tmp_path, image):
    path = write_png_atomic(tmp_path / "x.png", image)
    read = np.array(Image.open(path))
    assert read.dtype == image.dtype and np.array_equal(read, image)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left


@pytest.mark.parametrize("offset", [(120.0, 80.0), (-30.0, -20.0)], ids=["inside", "over the corner"])
def test_the_texture_samples_the_photo_region_under_the_crop_as_the_whole_photo(offset):
    from facegen.export.face_files import _photo_region
    from facegen.render.points import sample_image_at_points

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    angle, scale = 0.3, 1.7  # crop pixels -> photo pixels: rotated, scaled, shifted
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    to_photo = np.concatenate([linear, np.array(offset)[:, None]], 1)
    region, shifted = _photo_region(photo, to_photo, (64, 64))
    assert region.shape[0] * region.shape[1] < photo.shape[0] * photo.shape[1]
    crop_pixels = torch.from_numpy(rng.uniform(-0.5, 63.5, (1, 500, 2)))

    def sampled(image, matrix):
        pixels = crop_pixels @ torch.from_numpy(matrix[:, :2]).T + torch.from_numpy(matrix[:, 2])
        tensor = torch.from_numpy(np.ascontiguousarray(image)).double().permute(2, 0, 1)[None] / 255
        return sample_image_at_points(tensor, pixels)

    assert torch.allclose(sampled(region, shifted), sampled(photo, to_photo), atol=1e-9)


@pytest.mark.parametrize("offset", [(120.0, 80.0), (-30.0, -20.0)], ids=["inside", "over the corner"])
def test_the_overlay_blends_the_render_footprint_as_the_whole_photo_would(offset):
    import cv2

    from facegen.export.face_files import _overlay

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    angle, scale = 0.3, 1.7
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    to_photo = np.concatenate([linear, np.array(offset)[:, None]], 1)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:45, 15:50] = 1.0
    mask[..., 19, 15:50] = 0.5  # an anti-aliased edge
    render = torch.rand(1, 3, 64, 64)
    points = torch.full((1, 68, 2), -1000.0)  # landmarks off the photo: only the blend is compared
    face = SimpleNamespace(
        render=render, render_mask=mask, landmarks=points, detected=points, photo=photo, crop=render
    )
    overlay = _overlay(face, to_photo)

    size = (photo.shape[1], photo.shape[0])
    warped = cv2.warpAffine(
        (render[0].permute(1, 2, 0).numpy() * 255).round().astype(np.float32), to_photo, size
    )
    alpha = 0.6 * cv2.warpAffine(mask[0, 0].numpy(), to_photo, size)[..., None]
    expected = (photo * (1 - alpha) + warped * alpha).round().astype(np.uint8)
    assert (alpha > 0).sum() > 1000 and np.array_equal(overlay, expected)
    assert overlay is not photo and np.array_equal(photo, face.photo)  # the photo itself is left alone


def test_the_overlay_and_the_texture_take_the_face_proper_only():
    """Pixels of triangles outside the model's skin mask (ICT's neck plate) keep the photo; their texels are
    filled as hidden ones."""
    from facegen.export.face_files import ModelFiles, _overlay
    from facegen.morphable.builtin import builtin_model

    model = builtin_model()
    files = ModelFiles.of(model, 64)
    outside = ~files.face_triangles
    assert 0 < outside.sum() < len(outside)  # the built-in model's skin mask leaves some triangles out
    assert np.array_equal(files.face_triangles, model.mask("skin")[model.faces].all(1).numpy())
    texels = files.photo_texels
    layout = files.layout.pix_to_face
    assert texels.dtype == torch.bool and not texels[layout < 0].any()
    assert np.array_equal(texels[layout >= 0].numpy(), files.face_triangles[layout[layout >= 0].numpy()])
    # a crop half covered by a face-proper triangle, half by one outside it
    inside_triangle, outside_triangle = int(np.flatnonzero(~outside)[0]), int(np.flatnonzero(outside)[0])
    pix_to_face = torch.full((1, 8, 8), inside_triangle)
    pix_to_face[..., 4:] = outside_triangle
    crop = torch.zeros(1, 3, 8, 8)
    points = torch.full((1, 68, 2), -1000.0)
    face = SimpleNamespace(
        render=torch.ones(1, 3, 8, 8),
        render_mask=torch.ones(1, 1, 8, 8),
        fragments=SimpleNamespace(pix_to_face=pix_to_face),
        landmarks=points,
        detected=points,
        photo=None,
        crop=crop,
    )
    overlay = _overlay(face, None, files.face_triangles)
    assert (overlay[:, :4] == 153).all() and (overlay[:, 4:] == 0).all()  # 0.6 x white, the crop untouched
    assert (_overlay(face, None)[:, 4:] == 153).all()  # without the mask: everything


def test_recent_photos_decode_each_photo_once_for_all_its_faces_and_share_errors(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from facegen.callbacks import face_exporter
    from facegen.data.photos import UnreadableImage

    decoded = []

    def read_photo(path):
        decoded.append(path)
        if path == "broken.jpg":
            raise UnreadableImage("broken.jpg: cannot decode image")
        return np.full((4, 6, 3), len(decoded), np.uint8)

    monkeypatch.setattr(face_exporter, "read_photo", read_photo)
    photos = face_exporter.RecentPhotos(keep=2)
    faces = ["a.jpg"] * 5 + ["b.jpg"] * 3 + ["a.jpg"]  # the faces of a, of b, then a again (still kept)
    with ThreadPoolExecutor(2) as pool:
        arrays = list(pool.map(photos.read, faces))
    assert decoded == ["a.jpg", "b.jpg"]
    assert all(a is arrays[0] for a in arrays[:5] + arrays[8:]) and not arrays[0].flags.writeable
    for _ in range(2):  # every face of a bad photo gets the same error; the photo is tried once
        with pytest.raises(UnreadableImage, match="broken.jpg"):
            photos.read("broken.jpg")
    photos.read("c.jpg")
    photos.read("a.jpg")  # pushed out by broken.jpg and c.jpg: decoded again
    assert decoded == ["a.jpg", "b.jpg", "broken.jpg", "c.jpg", "a.jpg"]
