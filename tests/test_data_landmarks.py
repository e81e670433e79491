"""iBUG-68 mirror permutation, landmark file readers, similarity alignment and crops."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.data.alignment import crop_template, face_mask, warp_crop
from facegen.data.landmarks import LandmarkFileError, read_dlib_xml, read_pts, write_pts
from facegen.geometry.affine import apply_affine, estimate_similarity, invert_affine
from facegen.geometry.landmarks import MIRROR_PERMUTATION, mirror_landmarks
from tests.data_helpers import face_photo, template_landmarks


def test_mirror_permutation_is_an_involution_that_maps_a_symmetric_face_onto_itself(builtin):
    assert sorted(MIRROR_PERMUTATION) == list(range(68))
    assert (MIRROR_PERMUTATION[MIRROR_PERMUTATION] == np.arange(68)).all()
    # the built-in model is left-right symmetric: mirrored landmarks are the permuted landmarks
    points = builtin.mean[builtin.landmark_indices, :2].numpy()
    mirrored = points[MIRROR_PERMUTATION] * np.array([-1, 1])
    assert np.abs(mirrored - points).max() < 0.02 * np.ptp(points)  # vertices snapped near the true spots
    image_points = points * np.array([1, -1]) * 100 + 200
    flipped = mirror_landmarks(image_points, width=401)
    assert np.abs(flipped - image_points).max() < 0.02 * np.ptp(image_points)


def test_pts_is_one_based_and_bad_files_name_themselves(tmp_path):
    landmarks = np.arange(136, dtype=np.float32).reshape(68, 2)
    write_pts(tmp_path / "a.pts", landmarks)
    assert np.allclose(read_pts(tmp_path / "a.pts"), landmarks, atol=1e-3)
    (tmp_path / "bad.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n")
    with pytest.raises(LandmarkFileError, match="bad.pts.*68"):
        read_pts(tmp_path / "bad.pts")


def test_dlib_xml_reads_faces_and_skips_boxes_without_68_parts(tmp_path):
    parts = "".join(f"<part name='{i:02d}' x='{i}' y='{2 * i}'/>" for i in range(68))
    xml = (
        "<?xml version='1.0'?><dataset><images>"
        f"<image file='a.jpg'><box top='0' left='0' width='9' height='9'>{parts}</box>"
        "<box top='0' left='0' width='9' height='9'/></image></images></dataset>"
    )
    (tmp_path / "faces.xml").write_text(xml)
    faces = read_dlib_xml(tmp_path / "faces.xml")
    assert list(faces) == ["a.jpg"] and len(faces["a.jpg"]) == 1
    assert faces["a.jpg"][0][10].tolist() == [10, 20]


def test_similarity_recovers_a_known_transform_and_inverts():
    source = np.random.default_rng(0).random((68, 2)) * 100
    angle, scale = 0.3, 1.7
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ rotation.T * scale + np.array([5.0, -3.0])
    matrix = estimate_similarity(source, target)
    assert np.allclose(apply_affine(matrix, source), target, atol=1e-9)
    assert np.allclose(apply_affine(invert_affine(matrix), target), source, atol=1e-9)


@pytest.mark.parametrize("scale", [0.9, 3.0])  # 3x larger photo exercises the area-downscale path
def test_crop_puts_the_landmark_dots_where_the_transformed_landmarks_say(scale):
    landmarks = template_landmarks(scale, (260.0 * scale / 0.9, 240.0 * scale / 0.9), angle=0.2)
    photo = face_photo((int(520 * scale / 0.9), int(560 * scale / 0.9)), landmarks)
    matrix = estimate_similarity(landmarks, crop_template(224, 0.55))
    crop = warp_crop(photo, matrix, 224)
    projected = apply_affine(matrix, landmarks)
    assert np.abs(projected - crop_template(224, 0.55)).max() < 1e-6  # template is a similarity of itself
    values = [crop[int(round(y)), int(round(x))].mean() for x, y in projected]
    assert np.mean(values) > 120  # dots are 255 on a background below 60


def test_masks_cover_the_face_and_skin_excludes_the_eyes():
    template = crop_template(224, 0.55)
    face, skin = face_mask(template, 224, "face"), face_mask(template, 224, "skin")
    nose_x, nose_y = np.round(template[30]).astype(int)
    eye_x, eye_y = np.round(template[36:42].mean(0)).astype(int)
    assert face[nose_y, nose_x] == 255 and face[2, 2] == 0
    assert skin[nose_y, nose_x] == 255 and skin[eye_y, eye_x] == 0 and face[eye_y, eye_x] == 255
