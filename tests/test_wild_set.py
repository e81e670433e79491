"""The wild development set's layout (``poses.csv`` + photos + ``.pts``) read from files the tests write, its
scores against values computed by hand, and the yaw convention that ties the pose table to facegen's codes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegen.data.landmarks import write_pts
from facegen.data.wild_set import read_wild
from facegen.errors import ConfigError
from facegen.evaluation.wild import TABLE_YAW_SIGN, summarise, wrong_way
from facegen.tasks import MoFA

HEADER = "image,pts,dataset,yaw_deg\n"


def test_the_table_is_read_with_unique_keys_and_a_missing_file_is_named(tmp_path):
    (tmp_path / "afw").mkdir()
    (tmp_path / "afw" / "1.jpg").write_bytes(b"photo")
    points = np.arange(136, dtype=np.float64).reshape(68, 2)
    write_pts(tmp_path / "afw" / "1_1.pts", points)
    write_pts(tmp_path / "afw" / "1_2.pts", points + 5)
    rows = "afw/1.jpg,afw/1_1.pts,AFW,-40.5\nafw/1.jpg,afw/1_2.pts,AFW,12\n"
    (tmp_path / "poses.csv").write_text(HEADER + rows)
    faces = read_wild(tmp_path)
    assert [f.key for f in faces] == ["afw_1_1", "afw_1_2"]
    assert [f.yaw for f in faces] == [-40.5, 12.0]
    np.testing.assert_allclose(faces[1].points, points + 5, atol=1e-3)
    (tmp_path / "poses.csv").write_text(HEADER + rows + "afw/2.jpg,afw/2_1.pts,AFW,0\n")
    with pytest.raises(ConfigError, match="afw/2.jpg or afw/2_1.pts is missing"):
        read_wild(tmp_path)
    with pytest.raises(ConfigError, match="no poses.csv"):
        read_wild(tmp_path / "afw")


def test_wrong_way_fits_and_yaw_errors_are_counted_per_bin():
    rows = [
        {"nme_box": 0.02, "nme_io": 0.04, "yaw": 40.0, "fitted_yaw": -35.0},  # wrong way
        {"nme_box": 0.04, "nme_io": 0.12, "yaw": 35.0, "fitted_yaw": 30.0},
        {"nme_box": 0.03, "nme_io": 0.05, "yaw": -20.0, "fitted_yaw": -24.0},
        {"nme_box": 0.01, "nme_io": 0.02, "yaw": 10.0, "fitted_yaw": -4.0},  # too frontal to tell
    ]
    summary = summarise(rows, annotated=5)
    assert summary["missing"] == 1
    assert summary["all"] == {
        "faces": 4,
        "nme_box": 0.025,
        "nme_io": 0.0575,
        "failures": 1,
        "yaw_error_deg": 24.5,  # (75 + 5 + 4 + 14) / 4
        "wrong_way": 1,
    }
    assert summary["30-90"]["wrong_way"] == 1 and summary["30-90"]["yaw_error_deg"] == 40.0
    assert summary["0-15"]["wrong_way"] == 0 and summary["15-30"]["faces"] == 1
    detector_only = summarise([{k: v for k, v in r.items() if k != "fitted_yaw"} for r in rows], 4)
    assert "wrong_way" not in detector_only["all"]
    assert wrong_way(-15.0, 15.0) and not wrong_way(-14.0, 14.9) and not wrong_way(0.0, 50.0)


def test_a_positive_facegen_yaw_turns_the_nose_the_way_a_negative_table_yaw_does():
    """The table's yaw is positive when the nose points toward the image's right; a face decoded with a positive
    facegen yaw must have its nose tip left of its eyes' midpoint, so ``TABLE_YAW_SIGN`` is -1."""
    model = MoFA(face_model="builtin", image_size=64, depths=(1, 1, 1, 1), width=8).eval()
    code = model.decoder.layout().zeros(1)
    rotation = code.rotation.clone()
    rotation[0, 1] = math.radians(30)
    with torch.no_grad():
        landmarks = model.decoder(code._replace(rotation=rotation)).landmarks[0]
    eyes = (landmarks[36, 0] + landmarks[45, 0]) / 2
    assert landmarks[30, 0] < eyes - 2  # the nose tip toward the image's left
    assert TABLE_YAW_SIGN == -1.0
