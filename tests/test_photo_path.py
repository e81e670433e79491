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
