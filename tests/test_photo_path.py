"""The photo path on a real photo that CI has without the shared assets: scikit-image's astronaut (NASA, public
domain, inside the scikit-image wheel). The landmark models come through ``facegen fetch`` (``make test`` runs
it; under ``CI=true`` these tests fail instead of skipping without them), so a green CI means a fresh machine
detects, landmarks and reconstructs a face from a photo."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from facegen.cli import main
from facegen.data.detection import dlib_landmarks as dl
from facegen.data.detection.detectors import build_detector
from facegen.data.photos import read_photo
from tests.test_predict import predict_config


@pytest.mark.usefixtures("litert_models")
def test_litert_and_dlib_find_the_one_face_and_agree_on_its_points(packaged_photo):
    photo = read_photo(str(packaged_photo))
    faces = {name: build_detector(name).detect(photo) for name in ("litert", "dlib")}
    assert [len(found) for found in faces.values()] == [1, 1]
    (mesh,), (fused,) = faces.values()
    x0, y0, x1, y1 = mesh.bbox
    inside = (fused.landmarks[:, 0] > x0) & (fused.landmarks[:, 0] < x1) & (fused.landmarks[:, 1] > y0)
    assert inside.all() and (fused.landmarks[:, 1] < y1 + 0.3 * (y1 - y0)).all()  # the chin may reach below
    assert fused.detector == "dlib"  # a frontal face: dlib's HOG detector accepts it
    assert dl.agreement(fused.landmarks, mesh.landmarks)[17:].mean() < dl.AGREEMENT
    assert fused.confidence.shape == (68,) and np.isfinite(fused.confidence).all()


@pytest.mark.usefixtures("litert_models")
def test_predict_reconstructs_the_photo_with_the_auto_detector(tmp_path, packaged_photo):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(packaged_photo, folder / "astronaut.png")
    config = predict_config(tmp_path, folder, 2)
    config.write_text(config.read_text().replace("predict_detector: files", "predict_detector: auto"))
    out = tmp_path / "out"
    main(["predict", "--config", str(config), "--out", str(out), "--outputs", "[code, overlay]"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces_written"] == 1 and summary["photos_rejected"] == 0
    (face,) = summary["written"]
    record = json.loads((out / face / "code.json").read_text())
    assert record["detector"] == "dlib" and np.shape(record["landmarks_2d_photo_px"]) == (68, 2)
    assert (out / face / "overlay.jpg").is_file()


def test_dlibs_face_descriptor_tells_the_same_face_from_another(tmp_path, packaged_photo):
    """The texture benchmark's default identity measure on the astronaut: the crop against itself, its mirror
    image (one person: dlib's distance below 0.6) and a rendered face of the built-in model (another); and
    ``facegen evaluate texture``'s scorer reading a prediction folder with it."""
    from PIL import Image

    from facegen.commands.synthetic_benchmark import SyntheticSettings, render_benchmark
    from facegen.commands.texture_benchmark import score_textures
    from facegen.data.detection.dlib_identity import DlibIdentity
    from facegen.morphable.builtin import builtin_model

    crop = read_photo(str(packaged_photo))[36:206, 135:305]
    identity = DlibIdentity()
    assert identity.similarity(crop, crop).distance < 1e-6
    mirrored = identity.similarity(crop, crop[:, ::-1])
    assert mirrored.distance < 0.6 and mirrored.cosine > 0.95
    render_benchmark(builtin_model(), 112, SyntheticSettings(n=1), tmp_path / "render")
    stranger = np.asarray(Image.open(tmp_path / "render" / "face_0000.png").convert("RGB"))
    other = identity.similarity(crop, stranger)
    assert other.distance > 0.6 and other.cosine < mirrored.cosine
    face = tmp_path / "predictions" / "astronaut_f0"
    face.mkdir(parents=True)
    (face / "fit.json").write_text(json.dumps({"psnr": 30.0, "ssim": 0.9, "l1": 0.02}))
    side = np.asarray(Image.fromarray(crop).resize((64, 64)))
    Image.fromarray(np.concatenate([side, side[:, ::-1], side], 1)).save(face / "side_by_side.png")
    (result,), failures = score_textures(tmp_path / "predictions", "dlib")
    assert failures == [] and result["identity_distance"] < 0.6 and result["identity_cosine"] > 0.9
    assert "lpips" not in result and result["psnr"] == 30.0
