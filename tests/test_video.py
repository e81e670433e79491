"""Video input: frames read at a chosen rate from a video the tests encode, the overlay video written back, one
identity per video with pose/expression refitted and smoothed in time, and `facegen predict` on a video end to
end."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from docs.make_glb_figure import read_glb
from facegen.cli import main
from facegen.data.batch import FaceBatch
from facegen.data.detection import detectors
from facegen.data.detection.face import DetectedFace, landmark_bbox
from facegen.data.video import UnreadableVideo, read_frames
from facegen.decoder.code import FaceCode
from facegen.errors import ConfigError
from facegen.export.files import write_video_atomic
from facegen.fitting import LandmarkModel, LandmarkStage, fit_landmarks
from facegen.tasks import MoFA
from facegen.tasks.video import VideoOptions, VideoTracks
from tests.test_predict import PHOTO_OFFSET, PHOTO_SCALE, PHOTO_SIZE, SIZE, predict_config, synthetic_faces


def grey_frames(count: int, size=(64, 48)) -> list[np.ndarray]:
    return [np.full((size[1], size[0], 3), 10 + 20 * i, np.uint8) for i in range(count)]


def test_frames_are_read_in_order_at_the_chosen_rate(tmp_path):
    path = write_video_atomic(tmp_path / "clip.mp4", grey_frames(12), fps=10)
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, then renamed
    every = list(read_frames(path))
    assert [f.index for f in every] == list(range(12))
    assert [f.time for f in every] == pytest.approx([i / 10 for i in range(12)])
    assert every[0].pixels.shape == (48, 64, 3) and every[0].pixels.dtype == np.uint8
    levels = [float(f.pixels.mean()) for f in every]
    assert levels == sorted(levels) and abs(levels[5] - 110) < 4  # the frames written, in order (lossy codec)
    assert [f.index for f in read_frames(path, fps=5)] == [0, 2, 4, 6, 8, 10]
    assert [f.index for f in read_frames(path, fps=3)] == [0, 4, 7, 10]  # ticks at 0, 1/3, 2/3, 1 s
    (tmp_path / "bad.mp4").write_bytes(b"not a video" * 20)
    with pytest.raises(UnreadableVideo, match="bad.mp4"):
        list(read_frames(tmp_path / "bad.mp4"))
    with pytest.raises(OSError, match="no frames"):
        write_video_atomic(tmp_path / "empty.mp4", [], fps=10)


def test_a_fit_with_a_fixed_identity_moves_only_pose_and_expression():
    model = MoFA(image_size=SIZE, depths=(1,), width=8)
    true, batch = synthetic_faces(model, 3, seed=3)
    landmarks = LandmarkModel(model.decoder, true.shape.shape[1], true.expression.shape[1])
    start = true._replace(expression=torch.zeros_like(true.expression), rotation=true.rotation * 0.5)
    weights = torch.ones(3, 68)
    stage = LandmarkStage(iterations=8, expression_prior=1e-3)
    fitted, _ = fit_landmarks(landmarks, start, batch.landmarks, weights, SIZE, stage, fixed_identity=True)
    assert torch.equal(fitted.shape, start.shape) and torch.equal(fitted.albedo, start.albedo)
    bases = landmarks.bases(landmarks.fixed_indices(3))

    def error(code: FaceCode) -> float:
        points = landmarks.points(bases, code.shape, code.expression)
        pixels = landmarks.project(code.rotation, code.translation, points)
        return float((pixels - batch.landmarks).norm(dim=-1).mean())

    assert error(fitted) < 0.1 * error(start) and error(fitted) < 0.2  # crop pixels at 64²


def _batch(video: str, frames: list[int]) -> FaceBatch:
    count = len(frames)
    return FaceBatch(
        image=torch.zeros(count, 3, 8, 8),
        landmarks=torch.zeros(count, 68, 2),
        mask=torch.ones(count, 1, 8, 8),
        key=[f"{video}_t{f}_f0" for f in frames],
        meta=[{"video": video, "frame": f, "time": f / 10, "fps": 10.0, "face_index": 0} for f in frames],
    )


def _code(values: list[float]) -> FaceCode:
    column = torch.tensor(values, dtype=torch.float64)[:, None]
    return FaceCode(
        rotation=column.repeat(1, 3),
        translation=column.repeat(1, 3),
        shape=column.repeat(1, 4),
        expression=column.repeat(1, 2),
        albedo=column.repeat(1, 4),
        light=column.repeat(1, 27),
    )


def test_tracks_share_one_identity_and_smooth_in_time_across_batches():
    refits = []

    def refit(batch, code):
        refits.append(batch.key)
        return code

    tracks = VideoTracks(VideoOptions(smoothing=0.5, identity_frames=3))
    first = tracks.apply(_batch("clip", [0, 1]), _code([2.0, 4.0]), refit)
    assert first.shape[:, 0].tolist() == [3.0, 3.0] and first.albedo[:, 0].tolist() == [3.0, 3.0]
    assert first.rotation[:, 0].tolist() == [2.0, 3.0]  # 0.5 * 2 + 0.5 * 4
    second = tracks.apply(_batch("clip", [2, 3]), _code([6.0, 100.0]), refit)
    assert second.shape[:, 0].tolist() == [4.0, 4.0]  # mean of 2, 4, 6; frame 3 comes after identity_frames
    assert second.light[:, 0].tolist() == [4.5, 52.25]  # the state carried over from the first batch
    assert refits == [["clip_t0_f0", "clip_t1_f0"], ["clip_t2_f0", "clip_t3_f0"]]
    other = tracks.apply(_batch("other", [0]), _code([9.0]), refit)  # another video: its own track
    assert other.shape[0, 0] == 9.0 and other.rotation[0, 0] == 9.0
    photos = _batch("x", [0])
    photos.meta = [{"source": "a.png"}]
    assert tracks.apply(photos, _code([5.0]), refit).shape[0, 0] == 5.0  # photos are left alone
    per_frame = VideoTracks(VideoOptions(identity="per_frame", smoothing=0.0))
    assert per_frame.apply(_batch("clip", [0, 1]), _code([2.0, 4.0]), refit).shape[:, 0].tolist() == [
        2.0,
        4.0,
    ]
    with pytest.raises(ConfigError, match="model.video"):
        VideoOptions(smoothing=1.0)


def video_predict(
    tmp_path,
    monkeypatch,
    face_model: str = "builtin",
    lost: frozenset = frozenset(),
    outputs: str | None = None,
):
    """``facegen predict`` on a 6-frame, 10 fps video of a synthetic face moving right by a pixel per frame, the
    landmark detector stubbed (the true landmarks; no face in the frames ``lost``). Returns the output folder and
    the image shapes the detector saw."""
    model = MoFA(image_size=SIZE, depths=(1,), width=8)
    _, batch = synthetic_faces(model, 1, seed=7)
    crop = (batch.image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    truth = batch.landmarks[0].numpy() * PHOTO_SCALE + np.asarray(PHOTO_OFFSET)
    frames, shifts = [], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    for shift in shifts:  # the face moves right by a pixel per frame
        matrix = np.array([[PHOTO_SCALE, 0, PHOTO_OFFSET[0] + shift], [0, PHOTO_SCALE, PHOTO_OFFSET[1]]])
        frames.append(
            cv2.warpAffine(crop, matrix, PHOTO_SIZE, flags=cv2.INTER_CUBIC, borderValue=(90, 90, 90))
        )
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video_atomic(videos / "clip.mp4", frames, fps=10)
    seen = []

    class Tracker:  # stands in for a landmark detector: the true landmarks of each frame, in order
        name = "stub"

        def detect(self, image):
            index = len(seen)
            seen.append(image.shape)
            if index in lost:
                return []
            points = (truth + np.array([shifts[index], 0.0])).astype(np.float32)
            return [DetectedFace(points, landmark_bbox(points), 0.9, "stub")]

    monkeypatch.setattr(detectors, "build_detector", lambda *args: Tracker())
    config = yaml.safe_load(predict_config(tmp_path, videos, 0).read_text())  # the predict tests' config
    config["model"]["init_args"].update(
        face_model=face_model,
        fit={"pose": {"closed_form": True, "iterations": 3}, "landmarks": {"iterations": 5}},
        video={"smoothing": 0.5, "identity_frames": 4},  # all in the first batch
    )
    config["data"]["init_args"].update(predict_detector="face-alignment", video_fps=20)  # the stub above
    (tmp_path / "video.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    extra = ["--outputs", outputs] if outputs else []
    main(
        [
            "predict",
            "--config",
            str(tmp_path / "video.yaml"),
            "--out",
            str(out),
            "--texture_size",
            "32",
            *extra,
        ]
    )
    return out, seen


def test_predict_on_a_video_writes_each_frame_one_identity_and_an_overlay_video(tmp_path, monkeypatch):
    out, seen = video_predict(tmp_path, monkeypatch)
    assert seen == [(240, 260, 3)] * 6  # every frame of the 10 fps video (20 asked), at the video's size
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces_written"] == 6
    assert summary["videos"] == [
        {
            "video": "clip",
            "frames_with_face": 6,
            "overlay_video": "clip_overlay.mp4",
            "blendshapes": None,  # the built-in model's expressions are not ARKit blendshapes
            "blendshapes_skipped": "blendshape curves: none of the face model's expressions (jaw_open, "
            "smile_left, smile_right, pucker, ...) is an ARKit blendshape",
        }
    ]
    records = [json.loads((out / f"clip_t{i:06d}_f0" / "code.json").read_text()) for i in range(6)]
    assert all(r["shape"] == records[0]["shape"] for r in records)  # one identity for the whole video
    assert [r["video"] for r in records] == [{"video": "clip", "frame": i, "time": i / 10} for i in range(6)]
    centres = [np.mean(r["landmarks_photo_px"], axis=0)[0] for r in records]
    assert all(b > a for a, b in zip(centres, centres[1:], strict=False))  # the fit follows the face
    overlay = list(read_frames(out / "clip_overlay.mp4"))
    assert len(overlay) == 6 and overlay[0].pixels.shape == (240, 260, 3)


def test_a_broken_video_is_a_rejected_item_and_a_bad_rate_is_one_line(tmp_path):
    from facegen.data import FaceDataModule
    from facegen.data.photo_stream import PhotoFolderStream
    from facegen.data.prepare import CropOptions

    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 50)
    write_video_atomic(tmp_path / "fine.mp4", grey_frames(3), fps=10)  # frames without faces: no face each
    batches = list(PhotoFolderStream(str(tmp_path), 4, CropOptions(size=64), "files", video_fps=None))
    rejects = [(r.photo, r.reason) for batch in batches for r in batch["rejects"]]
    assert ("broken.mp4", "unreadable") in rejects
    assert [r for r in rejects if r[0].startswith("fine.mp4#")] == [
        (f"fine.mp4#{i}", "no_face") for i in range(3)
    ]
    with pytest.raises(ConfigError, match="data.video_fps must be > 0"):
        FaceDataModule(predict_dir=str(tmp_path), video_fps=0)


def test_a_video_cut_short_gives_its_frames_and_is_reported_as_truncated(tmp_path):
    from facegen.data.photo_stream import PhotoFolderStream
    from facegen.data.prepare import CropOptions
    from facegen.data.video import TruncatedVideo

    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(20):
        writer.write(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    folder = tmp_path / "videos"
    folder.mkdir()
    data = whole.read_bytes()
    (folder / "cut.avi").write_bytes(data[: len(data) // 2])
    frames = []
    with pytest.raises(TruncatedVideo, match="cut.avi: the video ended after (\\d+) of the 20 frames"):
        frames.extend(read_frames(folder / "cut.avi"))
    assert 0 < len(frames) < 20 and [f.index for f in frames] == list(range(len(frames)))
    batches = list(PhotoFolderStream(str(folder), 4, CropOptions(size=64), "files", video_fps=None))
    rejects = [(r.photo, r.reason) for batch in batches for r in batch["rejects"]]
    assert rejects[-1] == ("cut.avi", "video_truncated")
    assert len([r for r in rejects if r[0].startswith("cut.avi#")]) == len(frames)  # each frame was read


def test_a_photo_named_like_a_frame_of_a_video_gets_its_own_key(tmp_path):
    from facegen.data.keys import frame_stem
    from facegen.data.photos import PhotoInput

    write_video_atomic(tmp_path / "clip.mp4", grey_frames(2), fps=10)
    cv2.imwrite(str(tmp_path / "clip_t000000.jpg"), grey_frames(1)[0])
    cv2.imwrite(str(tmp_path / "other_t000000.jpg"), grey_frames(1)[0])
    keys = PhotoInput(str(tmp_path), videos=True).keys
    assert keys["clip.mp4"] == "clip" and keys["other_t000000.jpg"] == "other_t000000"
    assert keys["clip_t000000.jpg"].startswith("clip_t000000-")  # never frame_stem("clip", 0)
    assert frame_stem(keys["clip.mp4"], 0) == "clip_t000000"


def test_a_video_gives_arkit_blendshape_curves_with_lost_frames_marked(tmp_path, monkeypatch):
    from facegen.export.arkit import ARKIT_NAMES, CURVE_COUNT
    from facegen.morphable.registry import load_face_model

    arkit = ["jawOpen", "mouthSmile_L", "mouthSmile_R", "mouthPucker", "mouthStretch_L", "mouthLeft",
             "browOuterUp_L", "browOuterUp_R", "mouthFrown_L", "eyeBlink_L", "eyeBlink_R", "cheekPuff_L",
             "cheekPuff_R", "mouthUpperUp_L", "jawLeft", "mouthClose"]  # fmt: skip
    builtin = load_face_model("builtin")
    model = builtin.__class__.from_arrays(
        {**builtin.to_arrays(), "expression_names": np.array(arkit)}, "arkit"
    )
    model.save(tmp_path / "arkit.npz")
    outputs = "[glb, texture, overlay, code]"
    out, _ = video_predict(tmp_path, monkeypatch, str(tmp_path / "arkit.npz"), frozenset({3}), outputs)
    (record,) = json.loads((out / "summary.json").read_text())["videos"]
    assert record["blendshapes"] == "clip_blendshapes.csv" and record["frames_lost"] == 1
    assert record["animation"] == "clip_animation.glb"
    rows = list(csv.reader((out / "clip_blendshapes.csv").open()))
    header, rows = rows[0], rows[1:]
    assert header[:2] == ["Timecode", "BlendShapeCount"] and header[2:54] == list(ARKIT_NAMES)
    assert header[54:57] == ["HeadYaw", "HeadPitch", "HeadRoll"] and header[-1] == "Tracked"
    assert len(rows) == 6 and [row[-1] for row in rows] == ["1", "1", "1", "0", "1", "1"]
    assert rows[3][2:-1] == [""] * CURVE_COUNT  # the lost frame: no weights, never interpolated
    assert rows[1][0] == "00:00:00:01.000" and all(row[1] == str(CURVE_COUNT) for row in rows)
    weights = np.array([[float(v) for v in row[2:54]] for row in rows if row[-1] == "1"])
    assert ((weights >= 0) & (weights <= 1)).all()
    code = json.loads((out / "clip_t000000_f0" / "code.json").read_text())["expression"]
    assert weights[0, ARKIT_NAMES.index("JawOpen")] == pytest.approx(
        min(max(code["jawOpen"], 0), 1), abs=1e-5
    )
    puff = (code["cheekPuff_L"] + code["cheekPuff_R"]) / 2  # ARKit's one CheekPuff: the mean of the sides
    assert weights[0, ARKIT_NAMES.index("CheekPuff")] == pytest.approx(min(max(puff, 0), 1), abs=1e-5)
    gltf, accessor = read_glb((out / "clip_animation.glb").read_bytes())
    (animation,) = gltf.animations
    times = accessor(animation.samplers[0].input)
    assert times.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.5])  # the tracked frames
    keyed = accessor(animation.samplers[0].output).reshape(5, -1)
    assert keyed.shape[1] == len(arkit) and keyed[0, 0] == pytest.approx(code["jawOpen"], abs=1e-5)
    rotations = accessor(animation.samplers[1].output)
    assert rotations.shape == (5, 4) and np.allclose(np.linalg.norm(rotations, axis=1), 1, atol=1e-6)
    assert [c.target.path for c in animation.channels] == ["weights", "rotation"]
    assert gltf.meshes[0].extras["targetNames"] == arkit and gltf.images  # the first frame's texture
    document = json.loads((out / "clip_blendshapes.json").read_text())
    assert document["fps"] == 10 and "TongueOut" in document["unfilled"]
    assert [frame["tracked"] for frame in document["frames"]] == [True, True, True, False, True, True]
