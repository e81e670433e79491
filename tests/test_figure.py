"""docs/make_figure.py, the README's picture: run on a synthetic photo with a landmark file and the built-in
model, it writes photo | overlay | two views of the textured mesh | UV texture."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np

from docs.make_figure import GAP, HEIGHT
from docs.make_figure import main as make_figure
from tests.test_predict import synthetic_photos  # noqa: F401  (the fixture)


def figure_arguments(folder, photos_and_truth, out) -> list[str]:
    """A figure script's command line for a synthetic photo (with its landmark file) and the built-in model."""
    photos, _ = photos_and_truth
    for name in ("face0.png", "face0.pts"):
        shutil.copy(photos / name, folder / name)
    extra = ["--model.init_args.face_model", "builtin", "--model.init_args.image_size", "64"]
    return ["--photo", str(folder / "face0.png"), "--out", str(out), "--", *extra]


def test_the_figure_shows_the_photo_overlay_two_views_and_the_texture(tmp_path, synthetic_photos, capsys):  # noqa: F811
    out = tmp_path / "figure.jpg"
    make_figure(figure_arguments(tmp_path, synthetic_photos, out))
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["face"] == "face0_f0"
    picture = cv2.imread(str(out))
    assert picture.shape == (HEIGHT, 5 * HEIGHT + 4 * GAP, 3)
    panels = [picture[:, i * (HEIGHT + GAP) : i * (HEIGHT + GAP) + HEIGHT].astype(int) for i in range(5)]
    assert np.abs(panels[0] - panels[1]).mean() > 2  # the overlay differs from the photo
    for view in panels[2:4]:  # each view shows the mesh on white
        assert (view.min(-1) < 200).mean() > 0.1 and (view.min(-1) > 245).mean() > 0.1
    assert np.abs(panels[2] - panels[3]).mean() > 5  # turned


def test_the_glb_figure_reads_the_file_back_and_moves_its_morph_targets(tmp_path, synthetic_photos, capsys):  # noqa: F811
    from docs.make_glb_figure import main as make_glb_figure

    out = tmp_path / "glb.jpg"
    make_glb_figure(figure_arguments(tmp_path, synthetic_photos, out))
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["panels"] == [
        [],
        ["jaw_open"],
        ["smile_left", "smile_right"],
        ["blink_left", "blink_right"],
    ]
    picture = cv2.imread(str(out))
    assert picture.shape == (HEIGHT, 4 * HEIGHT + 3 * GAP, 3)
    panels = [picture[:, i * (HEIGHT + GAP) : i * (HEIGHT + GAP) + HEIGHT].astype(int) for i in range(4)]
    assert (panels[0].min(-1) < 200).mean() > 0.1  # the face is drawn
    assert np.abs(panels[1] - panels[0]).mean() > 1  # opening the jaw moves the mesh
