"""``facegen evaluate aflw2000``: the release's format read from format-exact files the tests write, the metrics
against values computed by hand, and the command end to end (predict in a child process, then scoring)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.io import savemat

from facegen.cli import main
from facegen.commands.evaluate import markdown, score_aflw2000
from facegen.errors import BadFileError, ConfigError
from facegen.evaluation.aflw2000 import (
    box_nme,
    box_nme_3d,
    head_pose_degrees,
    photo_depth,
    pose_errors,
    read_aflw2000,
    summarise,
    yaw_bin,
)


def _rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Model -> OpenCV camera rotation of a head pose in AFLW2000-3D's convention (degrees)."""
    p, y, r = (math.radians(a) for a in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return np.diag([1.0, -1.0, -1.0]) @ rx @ ry @ rz


def _landmarks(seed: int, offset=(100.0, 80.0), size=100.0) -> np.ndarray:
    points = np.random.default_rng(seed).uniform(0, size, (68, 2))
    points[0], points[1] = (0, 0), (size, size)  # the box is exactly size x size
    return points + np.asarray(offset)


def write_aflw(folder, items: dict[str, tuple[np.ndarray, tuple[float, float, float]]], photo=None) -> None:
    """An AFLW2000-3D folder: ``name.jpg`` + ``name.mat`` (pt3d_68 1-based, Pose_Para radians, roi)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (points, pose) in items.items():
        (folder / f"{name}.jpg").write_bytes(photo(name) if photo else b"")
        pt3d = np.vstack([points.T + 1.0, np.zeros((1, 68))])
        pose_para = np.array([[*(math.radians(a) for a in pose), 0.0, 0.0, 0.0, 1.0]])
        savemat(
            folder / f"{name}.mat", {"pt3d_68": pt3d, "Pose_Para": pose_para, "roi": np.array([[0, 0, 1, 1]])}
        )


def test_metrics_match_values_computed_by_hand():
    truth = _landmarks(0)
    assert box_nme(truth + np.array([3.0, 4.0]), truth) == pytest.approx(
        5 / 100
    )  # |(3, 4)| over sqrt(100·100)
    assert [yaw_bin(v) for v in (0, -29.9, 30, -59, 60, 90, 97)] == [0, 0, 1, 1, 2, 2, 2]
    assert pose_errors((179.0, 10.0, -5.0), (-179.0, 12.5, 5.0)) == pytest.approx((2.0, 2.5, 10.0))
    assert head_pose_degrees(_rotation(12.0, -40.0, 7.0)) == pytest.approx((12.0, -40.0, 7.0))
    assert head_pose_degrees(np.diag([1.0, -1.0, -1.0])) == pytest.approx((0.0, 0.0, 0.0))  # frontal
    results = [
        {"nme": 0.02, "yaw_gt": 10.0, "pose_error": [1.0, 2.0, 3.0]},
        {"nme": 0.04, "yaw_gt": -20.0, "pose_error": [3.0, 2.0, 1.0]},
        {"nme": 0.06, "yaw_gt": 45.0, "pose_error": [2.0, 2.0, 2.0]},
    ]
    summary = summarise(results, [{"item": "x", "reason": "no face found"}])
    assert summary["nme_0_30"] == pytest.approx(0.03) and summary["nme_30_60"] == pytest.approx(0.06)
    assert summary["nme_60_90"] is None and summary["count_60_90"] == 0
    assert summary["nme_balanced"] == pytest.approx(0.045)  # mean of the bins with faces
    assert summary["nme"] == pytest.approx(0.04) and summary["mae_pitch"] == pytest.approx(2.0)
    assert (summary["items"], summary["found"], summary["failures"]) == (4, 3, 1)
    assert "| 2D | 3.00 | 6.00 | – | 4.50 | 4.00 |" in markdown(summary)
    assert summary["nme_3d"] is None and "| 3D | – | – | – | – | – |" in markdown(summary)


def test_3d_nme_compares_centred_depths_in_the_photos_pixel_scale():
    truth = _landmarks(0)
    depth = np.random.default_rng(1).uniform(-20.0, 20.0, 68)
    signs = np.where(np.arange(68) % 2 == 0, 1.0, -1.0)  # a zero-mean depth error of 12 px per point
    predicted = np.column_stack([truth + np.array([3.0, 4.0]), depth + 500.0 + 12.0 * signs])
    assert box_nme_3d(predicted, np.column_stack([truth, depth])) == pytest.approx(13 / 100)  # |(3, 4, 12)|
    # a predicted face in the camera: the crop is the photo scaled by 2 and moved; focal 1000 px at depth 500
    focal, mean_depth, scale = 1000.0, 500.0, 2.0
    centred = depth - depth.mean()
    camera_z = mean_depth - centred * scale * mean_depth / focal  # nearer the camera = larger pt3d_68 z
    record = {
        "landmarks_3d_camera": np.column_stack([np.zeros((68, 2)), camera_z]).tolist(),
        "intrinsics_crop": [[focal, 0, 64], [0, focal, 64], [0, 0, 1]],
        "crop_from_photo": [[scale, 0, -30.0], [0, scale, 7.0]],
    }
    np.testing.assert_allclose(photo_depth(record), centred, atol=1e-9)
    assert photo_depth({"landmarks_photo_px": []}) is None  # records without 3D landmarks: no 3D score


def test_scoring_predictions_with_a_known_offset_and_pose(tmp_path):
    truth = {
        "image00001": (_landmarks(1), (5.0, 20.0, -3.0)),
        "image00002": (_landmarks(2), (0.0, -70.0, 0.0)),
    }
    write_aflw(tmp_path / "aflw", {**truth, "image00003": (_landmarks(3), (0.0, 35.0, 0.0))})
    items = read_aflw2000(tmp_path / "aflw")
    assert [i.name for i in items] == ["image00001", "image00002", "image00003"]
    np.testing.assert_allclose(items[0].landmarks, truth["image00001"][0])  # 1-based -> 0-based
    assert items[1].pose == pytest.approx((0.0, -70.0, 0.0))
    predictions = tmp_path / "predictions"
    for index, (name, (points, pose)) in enumerate(truth.items()):
        folder = predictions / f"{name}_face0"
        folder.mkdir(parents=True)
        predicted_pose = (pose[0] + 1.0, pose[1] - 2.0, pose[2])
        record = {
            "key": f"{name}_face0",
            "photo_path": str(tmp_path / "photos" / f"{name}.jpg"),
            "landmarks_photo_px": (points + np.array([0.0, 2.0 * (index + 1)])).tolist(),
            "camera_from_model": {"rotation": _rotation(*predicted_pose).tolist()},
            # flat predicted depth against the flat ground truth: the 3D error is the 2D one
            "landmarks_3d_camera": [[0.0, 0.0, 50.0]] * 68,
            "intrinsics_crop": [[800.0, 0, 112], [0, 800.0, 112], [0, 0, 1]],
            "crop_from_photo": [[1.0, 0, 0], [0, 1.0, 0]],
        }
        (folder / "code.json").write_text(json.dumps(record))
    # another face in the first photo, far from the annotated one: not matched
    far = predictions / "image00001_face1"
    far.mkdir()
    far_record = {
        "key": "far",
        "photo_path": "image00001.jpg",
        "landmarks_photo_px": (_landmarks(4) + 500).tolist(),
    }
    (far / "code.json").write_text(json.dumps(far_record))
    results, failures = score_aflw2000(items, predictions)
    assert [r["nme"] for r in results] == pytest.approx([0.02, 0.04])
    assert [r["nme_3d"] for r in results] == pytest.approx([0.02, 0.04])
    assert [r["face"] for r in results] == ["image00001_face0", "image00002_face0"]
    assert results[0]["pose_error"] == pytest.approx([1.0, 2.0, 0.0])
    assert failures == [{"item": "image00003", "reason": "no face found"}]


def test_a_root_that_is_not_the_release_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no image\\*.jpg of AFLW2000-3D"):
        read_aflw2000(tmp_path)
    (tmp_path / "image00001.jpg").write_bytes(b"")
    with pytest.raises(ConfigError, match="image00001.mat is missing"):
        read_aflw2000(tmp_path)
    savemat(tmp_path / "image00001.mat", {"something": np.zeros(3)})
    with pytest.raises(BadFileError, match="not an AFLW2000-3D annotation"):
        read_aflw2000(tmp_path)
    write_aflw(tmp_path, {"image00001": (_landmarks(0), (0.0, 0.0, 0.0))})
    np.save(tmp_path / "re.npy", np.zeros((1, 67, 2)))
    with pytest.raises(BadFileError, match="expected \\(1, 68, 2\\|3\\)"):
        read_aflw2000(tmp_path, tmp_path / "re.npy")
    np.save(tmp_path / "re.npy", np.ones((1, 3, 68)) * 11)
    assert read_aflw2000(tmp_path, tmp_path / "re.npy")[0].landmarks == pytest.approx(np.full((68, 2), 10.0))
    args = [
        "evaluate",
        "aflw2000",
        "--config",
        "x.yaml",
        "--ckpt_path",
        "x.ckpt",
        "--root",
        str(tmp_path / "none"),
    ]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unpack the official release" in err


def test_evaluate_runs_predict_and_scores_it(tmp_path, synthetic_photos_and_checkpoint):
    """Crop from the ground truth (no detector weights here): two synthetic faces in photos, one unreadable
    photo that counts as a failure."""
    photos, truth, training, checkpoint = synthetic_photos_and_checkpoint
    items = {f"image0000{i + 1}": (truth[f"face{i}"], (0.0, 10.0 * i, 0.0)) for i in range(2)}
    items["image00003"] = (_landmarks(5), (0.0, 65.0, 0.0))
    root = tmp_path / "AFLW2000"

    def photo(name: str) -> bytes:
        index = int(name[-1]) - 1
        return (photos / f"face{index}.jpg").read_bytes() if index < 2 else b"not a jpeg"

    write_aflw(root, items, photo)
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "aflw2000",
        "--config",
        str(training),
        "--ckpt_path",
        str(checkpoint),
        "--root",
        str(root),
    ]
    args += ["--out", str(out), "--crop", "truth", "--", "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["items"], summary["found"], summary["failures"]) == (3, 2, 1)
    assert summary["count_0_30"] == 2 and 0 < summary["nme"] < 1 and 0 < summary["nme_3d"] < 1
    results = json.loads((out / "results.json").read_text())
    assert results["failures"][0]["item"] == "image00003"
    for result in results["results"]:  # the scores are those of what predict wrote
        (record,) = [
            json.loads(p.read_text()) for p in (out / "predictions").glob(f"{result['item']}*/code.json")
        ]
        expected = box_nme(np.asarray(record["landmarks_photo_px"]), items[result["item"]][0])
        assert result["nme"] == pytest.approx(expected)
        assert (
            result["nme_3d"] >= result["nme"]
        )  # the same x, y errors plus depth (flat in the written truth)
    assert "NME balanced" in (out / "summary.md").read_text()
    assert sorted(p.name for p in (out / "photos").glob("*.pts")) == [f"{n}.pts" for n in sorted(items)]
    logged = [p.read_text() for p in training.parent.glob("runs/**/metrics.csv")]  # the config's CSVLogger
    assert any("benchmark/aflw2000/nme_balanced" in text for text in logged)


@pytest.fixture(scope="module")
def synthetic_photos_and_checkpoint(tmp_path_factory):
    """Two synthetic faces pasted into JPEG photos (landmarks known) and a tiny trained MoFA checkpoint."""
    import cv2

    from facegen.data.synth import SynthJob, SynthOptions
    from facegen.tasks import MoFA
    from tests.test_mofa import tiny_config
    from tests.test_predict import PHOTO_OFFSET, PHOTO_SCALE, PHOTO_SIZE, SIZE, synthetic_faces

    folder = tmp_path_factory.mktemp("evaluate")
    _, batch = synthetic_faces(MoFA(image_size=SIZE, depths=(1,), width=8), 2, seed=7)
    matrix = np.array([[PHOTO_SCALE, 0, PHOTO_OFFSET[0]], [0, PHOTO_SCALE, PHOTO_OFFSET[1]]])
    truth = {}
    for i in range(2):
        crop = (batch.image[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        photo = cv2.warpAffine(crop, matrix, PHOTO_SIZE, flags=cv2.INTER_CUBIC, borderValue=(90, 90, 90))
        cv2.imwrite(str(folder / f"face{i}.jpg"), photo[..., ::-1])
        truth[f"face{i}"] = batch.landmarks[i].numpy() * PHOTO_SCALE + np.asarray(PHOTO_OFFSET)
    shards = folder / "shards"
    for split, count, seed in (("train", 8, 0), ("val", 4, 1)):
        options = SynthOptions(size=48)
        SynthJob(
            "builtin",
            shards / split,
            count,
            samples_per_shard=count,
            seed=seed,
            options=options,
            progress=False,
        ).run()
    training = tiny_config(folder / "fit", shards, max_steps=2)
    main(["fit", "--config", str(training)])
    (checkpoint,) = (folder / "fit").rglob("last.ckpt")
    return folder, truth, training, checkpoint


def test_synthetic_scores_are_zero_for_the_truth_and_one_for_the_mean_face(tmp_path, builtin):
    from facegen.commands.synthetic_benchmark import (
        SyntheticSettings,
        render_benchmark,
        score_synthetic,
        summarise_synthetic,
    )

    truth = render_benchmark(builtin, 32, SyntheticSettings(n=3), tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").glob("face_*.p*")) == [
        f"face_{i:04d}.{ext}" for i in range(3) for ext in ("png", "pts")
    ]
    predictions = tmp_path / "predictions"
    angle = math.radians(30)  # a crop rotated in-plane by 30°: its camera rotation differs by Rz(30°)
    in_plane = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for i in range(3):
        folder = predictions / f"face_{i:04d}_0"
        folder.mkdir(parents=True)
        exact = i < 2
        rotation = truth["camera_rotation"][i]
        crop = np.block([[in_plane, np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]]) @ rotation
        record = {
            "photo_path": str(tmp_path / "data" / f"face_{i:04d}.png"),
            "shape": truth["shape"][i].tolist() if exact else [0.0] * truth["shape"].shape[1],
            "expression": truth["expression"][i].tolist() if exact else [0.0] * truth["expression"].shape[1],
            "landmarks_photo_px": (truth["landmarks"][i] + (0 if exact else 1.0)).tolist(),
            "camera_from_model": {"rotation": crop.tolist()},
            "crop_from_photo": np.hstack([2.0 * in_plane, np.ones((2, 1))]).tolist(),
        }
        (folder / "code.json").write_text(json.dumps(record))
    results, failures = score_synthetic(builtin, truth, predictions)
    assert not failures
    for result in results[:2]:
        assert result["vertex_error"] < 1e-5 and result["landmark_nme"] < 1e-9
        assert result["rotation_error_deg"] < 0.05  # acos of a float32 rotation near the identity
    assert results[2]["vertex_error_ratio"] == pytest.approx(1.0)  # the mean face is its own baseline
    summary = summarise_synthetic(results, [])
    assert summary["vertex_error_ratio"] == pytest.approx(
        np.mean([r["vertex_error"] for r in results])
        / np.mean([r["vertex_error_mean_face"] for r in results])
    )


def test_evaluate_synthetic_scores_the_encoder_and_the_fit(tmp_path, synthetic_photos_and_checkpoint):
    _, _, training, checkpoint = synthetic_photos_and_checkpoint
    out = tmp_path / "synthetic"
    args = ["evaluate", "synthetic", "--config", str(training), "--ckpt_path", str(checkpoint), "--n", "3"]
    fast = ["--trainer.enable_progress_bar", "false", "--model.init_args.fit.photometric.steps", "15"]
    assert main([*args, "--out", str(out), "--", *fast]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for run in ("encoder", "refined"):
        assert summary[run]["found"] == 3 and summary[run]["vertex_error_ratio"] > 0
    assert (
        summary["refined"]["landmark_nme"] < summary["encoder"]["landmark_nme"]
    )  # the fit uses the landmarks
    assert "| encoder |" in (out / "summary.md").read_text()


def test_evaluate_without_a_checkpoint_scores_the_configs_model(tmp_path, synthetic_photos_and_checkpoint):
    """A config that needs no checkpoint (as configs/photos_ict.yaml): its model as the config builds it."""
    photos, truth, training, _ = synthetic_photos_and_checkpoint
    root = tmp_path / "AFLW2000"
    items = {f"image0000{i + 1}": (truth[f"face{i}"], (0.0, 10.0 * i, 0.0)) for i in range(2)}
    write_aflw(root, items, lambda name: (photos / f"face{int(name[-1]) - 1}.jpg").read_bytes())
    out = tmp_path / "eval"
    args = ["evaluate", "aflw2000", "--config", str(training), "--root", str(root), "--out", str(out)]
    assert main([*args, "--crop", "truth", "--", "--trainer.enable_progress_bar", "false"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["items"], summary["found"]) == (2, 2) and 0 < summary["nme"] < 1
    synthetic = ["evaluate", "synthetic", "--config", str(training), "--n", "2", "--out", str(tmp_path / "s")]
    assert main([*synthetic, "--", "--trainer.enable_progress_bar", "false"]) == 0
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["encoder"]["found"] == 2 and summary["encoder"]["vertex_error_ratio"] > 0


def test_reannotated_rows_are_matched_to_a_subset_by_name(tmp_path):
    write_aflw(tmp_path, {name: (_landmarks(0), (0.0, 0.0, 0.0)) for name in ("image00004", "image00009")})
    release = ["image00002.jpg", "image00009.jpg", "image00004.jpg", "image00011.jpg"]  # the rows' order
    rows = np.stack([np.full((68, 2), 10.0 * (k + 1)) for k in range(len(release))])
    np.save(tmp_path / "re.npy", rows)
    (tmp_path / "names.txt").write_text("\n".join(release) + "\n")
    items = read_aflw2000(tmp_path, tmp_path / "re.npy", names=tmp_path / "names.txt")
    assert [i.name for i in items] == ["image00004", "image00009"]
    np.testing.assert_allclose(items[0].landmarks, 30.0 - 1)  # row 2, 1-based -> 0-based
    np.testing.assert_allclose(items[1].landmarks, 20.0 - 1)  # row 1
    with pytest.raises(ConfigError, match="4 rows but --root holds 2 photos; give --reannotated_names"):
        read_aflw2000(tmp_path, tmp_path / "re.npy")
    (tmp_path / "names.txt").write_text("image00004\nimage00002\nimage00003\nimage00011\n")  # no image00009
    with pytest.raises(BadFileError, match="image00009.jpg .and 0 more. of --root is not listed"):
        read_aflw2000(tmp_path, tmp_path / "re.npy", names=tmp_path / "names.txt")
    np.savez(tmp_path / "re.npz", points=rows)
    with pytest.raises(BadFileError, match="not a numeric .npy array"):
        read_aflw2000(tmp_path, tmp_path / "re.npz", names=tmp_path / "names.txt")


# ----------------------------------------------------------------------------- NoW
def test_closest_points_on_a_mesh_match_a_brute_force_search():
    from facegen.evaluation.now import _closest_on_triangles, closest_points

    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(40, 3))
    faces = np.array([rng.choice(40, 3, replace=False) for _ in range(60)])
    points = rng.normal(size=(200, 3)) * 1.5
    corners = vertices[faces]
    every = _closest_on_triangles(
        points[:, None], corners[None, :, 0], corners[None, :, 1], corners[None, :, 2]
    )
    brute = np.linalg.norm(every - points[:, None], axis=-1).min(1)
    found = np.linalg.norm(closest_points(points, vertices, faces) - points, axis=1)
    assert np.all(found >= brute - 1e-9)
    exact = np.mean(np.isclose(found, brute))
    assert exact > 0.9  # candidates by centroid distance: almost always the true closest triangle
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.0]])
    two = np.array([[0, 1, 2], [0, 2, 3]])
    probe = np.array([[0.3, 0.6, 2.0], [2.0, 0.5, 0.0], [-1.0, -1.0, 0.0]])
    expected = np.array([[0.3, 0.6, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])  # inside, edge, corner
    np.testing.assert_allclose(closest_points(probe, square, two), expected, atol=1e-12)


def test_now_metric_is_zero_for_the_scan_itself_and_the_offset_for_a_shifted_surface(builtin):
    from facegen.evaluation.now import NOW_FROM_IBUG, scan_to_mesh_errors

    vertices = builtin.mean.double().numpy()
    faces = builtin.faces.numpy()
    landmarks = vertices[builtin.landmark_indices.numpy()[list(NOW_FROM_IBUG)]]
    angle = 0.3
    rotation = np.array(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]]
    )
    scale = 1000.0 / np.ptp(vertices, axis=0).max() * 0.2  # a 200 mm head, moved and turned
    scan = scale * vertices @ rotation.T + np.array([10.0, -5.0, 300.0])
    scan_landmarks = scale * landmarks @ rotation.T + np.array([10.0, -5.0, 300.0])
    errors = scan_to_mesh_errors(vertices, faces, landmarks, scan, scan_landmarks, icp_iterations=3)
    assert errors.max() < 1e-6 * scale
    from facegen.geometry.normals import vertex_normals

    normals = vertex_normals(builtin.mean[None], builtin.faces)[0].double().numpy()
    shifted = scan + 2.0 * normals @ rotation.T  # the surface 2 mm out along its normals
    aligned_only = scan_to_mesh_errors(vertices, faces, landmarks, shifted, scan_landmarks, icp_iterations=0)
    assert abs(np.median(aligned_only) - 2.0) < 0.1
    refined = scan_to_mesh_errors(vertices, faces, landmarks, shifted, scan_landmarks, icp_iterations=5)
    assert refined.mean() < aligned_only.mean()  # ICP moves the open face mask forward onto the shifted scan


def test_picked_points_files_are_read_and_bad_ones_named(tmp_path):
    from facegen.evaluation.now import read_pp

    points = "".join(f'<point x="{i}" y="{i + 0.5}" z="-{i}" active="1" name="{i}"/>' for i in range(7))
    (tmp_path / "a.pp").write_text(f"<!DOCTYPE PickedPoints>\n<PickedPoints>{points}</PickedPoints>")
    assert read_pp(tmp_path / "a.pp")[3] == pytest.approx([3, 3.5, -3])
    (tmp_path / "b.pp").write_text("<PickedPoints><point x='1'/>")
    with pytest.raises(BadFileError, match="b.pp: not a MeshLab picked-points file"):
        read_pp(tmp_path / "b.pp")


def test_evaluate_now_writes_the_challenge_layout_and_scores_it(
    tmp_path, synthetic_photos_and_checkpoint, builtin
):
    import shutil

    from facegen.data.landmarks import write_pts
    from facegen.evaluation.now import NOW_FROM_IBUG

    photos, truth, training, checkpoint = synthetic_photos_and_checkpoint
    root = tmp_path / "NoW"
    listed = []
    for i, challenge in enumerate(("multiview_neutral", "selfie")):
        folder = root / "iphone_pictures" / "FaMoS_1" / challenge
        folder.mkdir(parents=True)
        shutil.copy(photos / f"face{i}.jpg", folder / "IMG_0001.jpg")
        write_pts(folder / "IMG_0001.pts", truth[f"face{i}"])  # landmark files you put beside photos are used
        listed.append(f"FaMoS_1/{challenge}/IMG_0001.jpg")
    lost = root / "iphone_pictures" / "FaMoS_1" / "occluded"
    lost.mkdir()
    shutil.copy(
        photos / "face0.jpg", lost / "IMG_0002.jpg"
    )  # no landmark file: the `files` detector finds none
    listed.append("FaMoS_1/occluded/IMG_0002.jpg")
    (root / "imagepathsvalidation.txt").write_text("\n".join(listed) + "\n")
    vertices = builtin.mean.double().numpy() * builtin.mm_per_unit
    (root / "scans" / "FaMoS_1").mkdir(parents=True)
    from facegen.export.obj import obj_text

    (root / "scans" / "FaMoS_1" / "natural_head_rotation.000001.obj").write_text(
        obj_text(vertices, builtin.faces.numpy())
    )
    (root / "scans_lmks_onlypp" / "FaMoS_1").mkdir(parents=True)
    lmk = vertices[builtin.landmark_indices.numpy()[list(NOW_FROM_IBUG)]]
    points = "".join(f'<point x="{x}" y="{y}" z="{z}" name="{k}"/>' for k, (x, y, z) in enumerate(lmk))
    (root / "scans_lmks_onlypp" / "FaMoS_1" / "natural_head_rotation.000001_picked_points.pp").write_text(
        f"<PickedPoints>{points}</PickedPoints>"
    )
    out = tmp_path / "now"
    args = ["evaluate", "now", "--config", str(training), "--ckpt_path", str(checkpoint), "--root", str(root)]
    fast = ["--trainer.enable_progress_bar", "false", "--data.init_args.predict_detector", "files"]
    assert main([*args, "--out", str(out), "--", *fast, "--model.init_args.fit.photometric.steps", "5"]) == 0
    meshes = out / "predicted_meshes" / "FaMoS_1"
    assert sorted(str(p.relative_to(meshes)) for p in meshes.rglob("*.*")) == [
        "multiview_neutral/IMG_0001.npy",
        "multiview_neutral/IMG_0001.obj",
        "selfie/IMG_0001.npy",
        "selfie/IMG_0001.obj",
    ]
    assert np.load(meshes / "selfie" / "IMG_0001.npy").shape == (7, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["items"], summary["scored"], summary["failures"]) == (3, 2, 1)
    assert 0 < summary["median_mm"] < 20  # a mean-face-like prediction against the mean face scan
    details = json.loads((out / "results.json").read_text())
    assert details["failures"] == [{"item": "FaMoS_1/occluded/IMG_0002.jpg", "reason": "no face found"}]
