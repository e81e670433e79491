"""`facegen prepare`: landmark files, detectors (face-alignment offline with random weights, MediaPipe when
installed), rejects, manifest, resuming, workers, and the shared real photos."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegen.cli import main
from facegen.data.detection import detectors
from facegen.data.detection.detectors import DetectorUnavailable, FaceAlignmentDetector
from facegen.data.detection.face import DetectedFace, landmark_bbox
from facegen.data.landmarks import write_pts
from facegen.data.prepare import CropOptions, PrepareJob
from facegen.data.streams import ShardStream, expand_shards
from tests.data_helpers import face_photo, template_landmarks


@pytest.fixture
def photo_folder(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """5 noise photos with landmark dots and .pts files, one tiny face, one corrupt file, one without landmarks."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    truth = {}
    from PIL import Image

    for i in range(5):
        landmarks = template_landmarks(0.8 + 0.2 * i, (200 + 10 * i, 180), angle=0.1 * i)
        name = f"sub/face.{i}.jpg" if i == 4 else f"face{i}.png"
        Image.fromarray(face_photo((400, 420), landmarks, seed=i)).save(folder / name)
        write_pts((folder / name).with_suffix(".pts"), landmarks)
        truth[name] = landmarks
    tiny = template_landmarks(0.1, (50, 50))
    Image.fromarray(face_photo((100, 100), tiny)).save(folder / "tiny.png")
    write_pts(folder / "tiny.pts", tiny)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(folder / "nolandmarks.png")
    return folder, truth


def read_shards(out: Path) -> dict[str, dict]:
    stream = ShardStream(expand_shards(str(out)), batch_size=100)
    samples = {}
    for batch in stream:
        for i, key in enumerate(batch["key"]):
            samples[key] = {
                "image": batch["image"][i],
                "landmarks": batch["landmarks"][i],
                "meta": batch["meta"][i],
                "mask": batch["mask"][i],
            }
    return samples


def test_prepare_from_landmark_files_writes_crops_manifest_and_rejects(photo_folder, tmp_path, capsys):
    folder, truth = photo_folder
    out = tmp_path / "shards"
    code = main(
        [
            "prepare",
            "--input",
            str(folder),
            "--out",
            str(out),
            "--detector",
            "files",
            "--photos-per-shard",
            "3",
            "--progress",
            "false",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {
        "photos": 8,
        "faces": 5,
        "shards": 3,
        "reject_counts": {
            "unreadable": 1,
            "no_face": 1,
            "face_too_small": 1,
            "face_outside_photo": 0,
            "face_dropped": 0,
        },
    }
    manifest = json.loads((out / "manifest.json").read_text())
    reasons = {r["source"]: r["reason"] for r in manifest["rejects"]}
    assert reasons == {
        "corrupt.jpg": "unreadable",
        "nolandmarks.png": "no_face",
        "tiny.png": "face_too_small",
    }
    assert {s["source"] for s in manifest["samples"]} == set(truth)
    assert not list(out.glob(".*.part"))
    samples = read_shards(out)
    assert len(samples) == 5 and "sub_face_4_f0" in samples  # dots in names become underscores
    for sample in samples.values():
        meta = sample["meta"]
        transform = np.asarray(meta["transform"])
        expected = truth[meta["source"]] @ transform[:, :2].T + transform[:, 2]
        assert np.allclose(sample["landmarks"].numpy(), expected, atol=1e-3)
        assert meta["detector"] == "pts" and sample["image"].shape == (3, 224, 224)
        # the bright landmark dots land on the crop's landmarks; the mask covers the nose
        x, y = sample["landmarks"].round().long().T
        assert sample["image"][:, y, x].float().mean() > 120
        assert sample["mask"][0, y[30], x[30]] == 255


def test_prepare_resumes_keeps_finished_shards_and_never_leaves_partial_ones(
    photo_folder, tmp_path, monkeypatch
):
    folder, _ = photo_folder
    out = tmp_path / "shards"
    job = PrepareJob(str(folder), out, "files", photos_per_shard=3, progress=False)
    import facegen.data.prepare as prepare

    real, calls = prepare.process_photo, []

    def crash_on_the_fifth(photo, detector, options):
        calls.append(photo.name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(photo, detector, options)

    monkeypatch.setattr(prepare, "process_photo", crash_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        job.run()
    assert sorted(p.name for p in out.iterdir()) == ["shard-000000.json", "shard-000000.tar"]
    first = (out / "shard-000000.tar").stat().st_mtime_ns
    monkeypatch.setattr(prepare, "process_photo", real)
    manifest = PrepareJob(str(folder), out, "files", photos_per_shard=3, progress=False).run()
    assert (out / "shard-000000.tar").stat().st_mtime_ns == first  # kept, not redone
    assert manifest["faces"] == 5 and len(manifest["shards"]) == 3
    with pytest.raises(FileExistsError, match="other options"):
        PrepareJob(
            str(folder), out, "files", crop=CropOptions(size=128), photos_per_shard=3, progress=False
        ).run()


def test_prepare_reads_a_tar_of_photos_with_worker_processes(photo_folder, tmp_path):
    folder, truth = photo_folder
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    out = tmp_path / "from_tar"
    manifest = PrepareJob(
        str(archive), out, "files", crop=CropOptions(size=112, mask="skin"), workers=2, progress=False
    ).run()
    assert manifest["faces"] == 5 and manifest["reject_counts"]["unreadable"] == 1
    assert next(iter(read_shards(out).values()))["image"].shape == (3, 112, 112)


def test_prepare_input_that_matches_nothing_is_a_clear_error(tmp_path, capsys):
    assert main(["prepare", "--input", str(tmp_path / "none*.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "no photos found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- face-alignment, offline
@pytest.fixture(scope="session")
def random_fan_home(tmp_path_factory) -> Path:
    """A TORCH_HOME holding an all-zero S3FD (it finds no face: every score is 0.5) and a randomly initialised
    2D-FAN-4 under face-alignment's file names."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(
        {k: torch.zeros_like(v) for k, v in s3fd().state_dict().items()}, folder / "s3fd-619a316812.pth"
    )
    torch.save(FAN(4).state_dict(), folder / "2DFAN4-11f355bf06.pth.tar")
    return home


def test_face_alignment_runs_its_real_code_path_offline(random_fan_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(random_fan_home))
    detector = FaceAlignmentDetector()
    image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    assert detector.detect(image) == []  # the zero detector finds nothing
    box = np.array([10.0, 12.0, 80.0, 85.0, 0.9])
    monkeypatch.setattr(detector._model.face_detector, "detect_from_image", lambda image: [box])
    (face,) = detector.detect(image)  # the random FAN still gives 68 landmarks for the box
    assert face.landmarks.shape == (68, 2) and np.isfinite(face.landmarks).all()
    assert face.confidence.shape == (68,) and ((face.confidence >= 0) & (face.confidence <= 1)).all()
    assert face.bbox == (10.0, 12.0, 80.0, 85.0) and face.score == pytest.approx(0.9)


def test_face_alignment_without_weights_says_which_file_to_place_where(tmp_path, monkeypatch):
    import urllib.error

    from face_alignment.detection.sfd import sfd_detector

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(sfd_detector, "load_state_dict_from_url", offline)
    with pytest.raises(DetectorUnavailable) as raised:
        FaceAlignmentDetector()
    message = str(raised.value)
    assert "\n" not in message and message.startswith("face-alignment cannot load its weights")
    assert "facegen fetch --detector face-alignment" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert (
        "s3fd-619a316812.pth" in message
        and "2DFAN4-11f355bf06.pth.tar" in message
        and "--detector litert" in message
    )


def test_mediapipe_detector_finds_the_landmarks_of_an_annotated_photo(assets):
    pytest.importorskip("mediapipe", reason="MediaPipe is optional: pip install 'facegen[mediapipe]'")
    from facegen.data.landmarks import read_pts
    from facegen.data.photos import decode_image

    photo = assets / "photos" / "annotated" / "image_0010.png"
    faces = detectors.MediaPipeDetector().detect(decode_image(photo.read_bytes(), photo.name))
    truth = read_pts(photo.with_suffix(".pts"))
    inter_ocular = np.linalg.norm(truth[36] - truth[45])
    errors = [np.linalg.norm(f.landmarks - truth, axis=1).mean() / inter_ocular for f in faces]
    assert faces and min(errors) < 0.1  # measured 0.047


# ----------------------------------------------------------------------------- shared real photos
def test_prepare_on_the_shared_photos_uses_pts_and_dlib_xml(assets, tmp_path):
    out = tmp_path / "real"
    manifest = PrepareJob(str(assets / "photos"), out, "files", photos_per_shard=8, progress=False).run()
    detectors_used = {s["detector"] for s in manifest["samples"]}
    assert "pts" in detectors_used and any(d.startswith("dlib-xml:") for d in detectors_used)
    sources = {s["source"] for s in manifest["samples"]}
    assert {"annotated/einstein.jpg", "annotated/takeo.ppm"} <= sources
    assert any(s.startswith("pseudo/") for s in sources)
    unlabeled = {
        r["source"]
        for r in manifest["rejects"]
        if r["reason"] == "no_face" and r["source"].startswith("unlabeled/")
    }
    assert unlabeled == {
        f"unlabeled/{n}" for n in ("astronaut.png", "multi_face.jpg", "single_face.jpg", "t1.jpg")
    }
    assert manifest["faces"] == sum(s["samples"] for s in manifest["shards"]) > 10


def test_prepare_rejects_bad_crop_options_with_the_flag_name(photo_folder, tmp_path, capsys):
    folder, _ = photo_folder
    with pytest.raises(SystemExit):
        main(["prepare", "--input", str(folder), "--out", str(tmp_path / "o"), "--fill", "5"])
    assert "--fill must be in [0.1, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_parts_of_a_slurm_array_write_disjoint_shards_and_a_final_run_writes_the_manifest(
    photo_folder, tmp_path, capsys
):
    folder, _ = photo_folder
    common = [
        "prepare",
        "--input",
        str(folder),
        "--detector",
        "files",
        "--photos-per-shard",
        "2",
        "--size",
        "32",
        "--progress",
        "false",
    ]
    out = tmp_path / "parts"
    for part in ("0/2", "1/2"):
        assert main([*common, "--out", str(out), "--part", part]) == 0
        assert not (out / "manifest.json").exists()
    assert sorted(p.name for p in out.glob("*.tar")) == [f"shard-{i:06d}.tar" for i in range(4)]
    capsys.readouterr()
    assert main([*common, "--out", str(out)]) == 0  # nothing left to prepare: only the manifest is written
    assert main([*common, "--out", str(tmp_path / "whole")]) == 0
    parts, whole = (json.loads((o / "manifest.json").read_text()) for o in (out, tmp_path / "whole"))
    assert parts["samples"] == whole["samples"] and parts["faces"] == 5
    assert main([*common, "--out", str(out), "--part", "2/2"]) == 2
    assert "--part must be I/N" in capsys.readouterr().err


def test_a_detector_is_built_only_for_a_photo_without_landmarks_and_errors_name_the_option(
    tmp_path, monkeypatch
):
    from facegen.data.photo_stream import PhotoFolderStream

    landmarks = template_landmarks(0.5, (80.0, 80.0))
    for name in ("a", "b"):
        Image.fromarray(face_photo((160, 160), landmarks)).save(tmp_path / f"{name}.png")
        write_pts(tmp_path / f"{name}.pts", landmarks)
    built = []

    class Finder:
        name = "stub"

        def detect(self, image):
            return []

    monkeypatch.setattr(detectors, "build_detector", lambda *args: built.append(args) or Finder())
    stream = PhotoFolderStream(str(tmp_path), 4, CropOptions(size=64), "face-alignment")
    assert sum(len(batch["key"]) for batch in stream) == 2 and built == []  # landmark files: no detector
    Image.fromarray(face_photo((160, 160), landmarks)).save(tmp_path / "c.png")  # no landmark file
    stream = PhotoFolderStream(str(tmp_path), 4, CropOptions(size=64), "face-alignment")
    rejects = [reject for batch in stream for reject in batch["rejects"]]
    assert built == [("face-alignment", "cpu", "data.predict_detector")]
    assert [(r.photo, r.reason) for r in rejects] == [("c.png", "no_face")]


def test_detector_confidences_reach_the_batches_and_the_shards(tmp_path, monkeypatch):
    from facegen.data.photo_stream import PhotoFolderStream
    from facegen.data.photos import Photo
    from facegen.data.prepare import _encode, process_photo
    from facegen.data.sample import decode_sample

    landmarks = template_landmarks(0.5, (80.0, 80.0))
    Image.fromarray(face_photo((160, 160), landmarks)).save(tmp_path / "a.png")
    confidence = np.linspace(0.2, 0.9, 68, dtype=np.float32)

    class Finder:
        name = "stub"

        def detect(self, image):
            return [DetectedFace(landmarks, landmark_bbox(landmarks), 0.9, "stub", confidence)]

    monkeypatch.setattr(detectors, "build_detector", lambda *args: Finder())
    (batch,) = PhotoFolderStream(str(tmp_path), 4, CropOptions(size=64), "face-alignment")
    np.testing.assert_array_equal(batch["confidence"][0].numpy(), confidence)
    photo = Photo("a.png", "a", (tmp_path / "a.png").read_bytes(), [], None)
    ((sample, _),) = _encode(process_photo(photo, Finder(), CropOptions(size=64))).samples
    np.testing.assert_array_equal(decode_sample(sample)["confidence"], confidence)


def test_faces_left_out_of_a_photo_are_reported_with_the_reason():
    from facegen.data.photos import Photo
    from facegen.data.prepare import process_photo
    from tests.data_helpers import png_bytes

    big, other, tiny = (
        template_landmarks(s, o)
        for s, o in ((0.6, (100.0, 100.0)), (0.5, (260.0, 100.0)), (0.1, (200.0, 220.0)))
    )
    photo = Photo("crowd.png", "crowd", png_bytes(face_photo((260, 340), big)), [tiny, big, other], "pts")
    result = process_photo(photo, None, CropOptions(size=64, max_faces=1))
    assert len(result.faces) == 1 and result.reject is None
    assert len(result.dropped) == 2
    assert "< --min-face-size 40" in result.dropped[0] and "beyond --max-faces 1" in result.dropped[1]


class DotFinder:
    """A stub backend that finds the brightest pixel, only in views ``accept(view)`` allows: every landmark
    of its face lies on that pixel."""

    name = "dots"

    def __init__(self, accept) -> None:
        self.accept, self.views = accept, []

    def detect(self, image):
        self.views.append(image.shape[:2])
        if not self.accept(image):
            return []
        y, x = np.unravel_index(image[..., 0].argmax(), image.shape[:2])
        points = np.tile(np.array([x, y], np.float32), (68, 1))
        return [DetectedFace(points, (x - 5.0, y - 5.0, x + 5.0, y + 5.0), 0.8, "dots")]


def test_a_detector_retries_larger_and_turned_and_maps_the_landmarks_back():
    image = np.zeros((100, 150, 3), np.uint8)
    image[30:33, 110:113] = 255  # a 3x3 dot centred on (111, 31)
    larger = detectors.RetryingDetector(DotFinder(lambda view: view.shape[1] >= 300))
    (face,) = larger.detect(image)
    np.testing.assert_allclose(face.landmarks[0], (111, 31), atol=1.0)
    turned_backend = DotFinder(lambda view: view.shape[:2] not in ((100, 150), (200, 300)))
    turned = detectors.RetryingDetector(turned_backend)
    (face,) = turned.detect(image)
    assert turned_backend.views[:2] == [(100, 150), (200, 300)] and len(turned_backend.views) == 3
    np.testing.assert_allclose(face.landmarks[0], (111, 31), atol=1.0)
    x0, y0, x1, y1 = face.bbox
    assert x0 < 111 < x1 and y0 < 31 < y1
    never = detectors.RetryingDetector(DotFinder(lambda view: False))
    assert never.detect(image) == []
    assert detectors.miss_reason(never) == (
        "dots found no face (tried as is, 2x larger, turned +30 degrees, turned -30 degrees)"
    )


def test_a_detector_chain_falls_back_and_says_why_it_found_nothing():
    class Broken:
        name = "broken"

        def detect(self, image):
            raise detectors.DetectorUnavailable("broken has no weights")

    image = np.zeros((40, 40, 3), np.uint8)
    image[20, 20] = 255
    chain = detectors.DetectorChain([Broken(), detectors.RetryingDetector(DotFinder(lambda view: True))])
    with pytest.warns(UserWarning, match="broken cannot start"):
        (face,) = chain.detect(image)
    assert face.detector == "dots"
    blind = detectors.DetectorChain([Broken(), detectors.RetryingDetector(DotFinder(lambda view: False))])
    with pytest.warns(UserWarning):
        assert blind.detect(image) == []
    assert detectors.miss_reason(blind).startswith("broken unavailable; dots found no face (tried as is")
    with (
        pytest.warns(UserWarning),
        pytest.raises(detectors.DetectorUnavailable, match="no detector can start"),
    ):
        detectors.DetectorChain([Broken()]).detect(image)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_photos_decode_upright_for_every_exif_orientation_as_pil_does(mode):
    import io

    from PIL import ImageOps

    from facegen.data.photos import EXIF_ORIENTATION, decode_image

    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90, exif=exif)
        with Image.open(io.BytesIO(buffer.getvalue())) as reference:
            expected = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
        decoded = decode_image(buffer.getvalue(), f"photo-{orientation}.jpg")
        assert decoded.shape == expected.shape == ((24, 40, 3) if orientation < 5 else (40, 24, 3))
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, expected), orientation


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_png_photos_decode_as_pil_does_and_an_exif_orientation_is_applied(mode):
    import io

    from PIL import ImageOps

    from facegen.data.photos import EXIF_ORIENTATION, decode_image

    pixels = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    for orientation in (1, 6):  # 6: an eXIf chunk, which sends the PNG through PIL
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        buffer = io.BytesIO()
        image.save(buffer, "PNG", **({"exif": exif} if orientation != 1 else {}))
        with Image.open(io.BytesIO(buffer.getvalue())) as reference:
            expected = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
        decoded = decode_image(buffer.getvalue(), "photo.png")
        assert decoded.shape == expected.shape == ((24, 40, 3) if orientation == 1 else (40, 24, 3))
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, expected), (mode, orientation)
