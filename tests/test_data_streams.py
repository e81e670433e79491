"""Shard streams and FaceDataModule: synth round trip, DDP/worker splitting, bad samples, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.cli import main
from facegen.data import FaceAugmentation, FaceDataModule, SyntheticData, SynthOptions
from facegen.data.sample import encode_array
from facegen.data.streams import ShardStream, expand_shards
from facegen.data.synth import SynthJob
from facegen.decoder import CodeLayout, FaceDecoder
from facegen.morphable.builtin import builtin_model
from tests.data_helpers import face_batch, good_sample, write_shard


@pytest.fixture(scope="module")
def synth_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    options = SynthOptions(size=64)
    SynthJob(
        "builtin", out, n=24, samples_per_shard=10, seed=3, batch_size=8, options=options, progress=False
    ).run()
    return out


def test_synth_round_trip_through_the_datamodule_reproduces_landmarks_and_pixels(synth_shards):
    data = FaceDataModule(val=str(synth_shards), batch_size=8, num_workers=0, image_size=64)
    data.setup("validate")
    batches = [data.on_after_batch_transfer(b, 0) for b in data.val_dataloader()]
    assert [len(b) for b in batches] == [8, 8, 8]
    batch = batches[0]
    assert batch.image.dtype == torch.float32 and 0 <= batch.image.min() and batch.image.max() <= 1
    model = builtin_model()
    decoder = FaceDecoder(model, (64, 64))
    layout = decoder.layout()
    code = layout.from_dict(batch.params)
    decoded = decoder(code)
    # the stored landmarks are the projections of the stored code's landmarks
    assert torch.allclose(decoded.landmarks, batch.landmarks, atol=1e-3)
    # and the stored image is the render of the code, up to JPEG error, inside the face mask
    render = decoder.render(decoded, code.light, background=0.0)
    inside = (batch.mask > 0.5) & (render.mask > 0.5)
    error = (render.image.clamp(0, 1) - batch.image).abs().mean(1, keepdim=True)[inside]
    assert inside.sum() > 1000 and error.mean() < 0.03
    assert batch.meta[0]["model"] == "facegen-builtin" and layout == CodeLayout(
        shape=80, expression=16, albedo=80
    )


def test_training_batches_carry_the_ground_truth_only_when_asked(synth_shards):
    def first_train_batch(**options):
        data = FaceDataModule(train=str(synth_shards), batch_size=8, num_workers=0, image_size=64, **options)
        data.setup(None)
        return next(iter(data.train_dataloader()))

    assert "params" not in first_train_batch()  # MoFA trains without it
    batch = first_train_batch(train_ground_truth=True)
    assert batch["params"]["shape"].shape == (8, 80)


def test_synth_cli_is_deterministic_per_shard_and_resumes(tmp_path, capsys):
    args = [
        "synth",
        "--n",
        "6",
        "--samples-per-shard",
        "3",
        "--batch-size",
        "2",
        "--options.size",
        "32",
        "--progress",
        "false",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    (tmp_path / "a" / "shard-000001.json").unlink()  # as if interrupted after writing shard 1's tar
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for name in ("shard-000000.tar", "shard-000001.tar"):
        a = ShardStream([str(tmp_path / "a" / name)], 3)
        b = ShardStream([str(tmp_path / "b" / name)], 3)
        assert torch.equal(next(iter(a))["image"], next(iter(b))["image"])
    with pytest.raises(SystemExit):
        main(["synth", "--n", "0", "--out", str(tmp_path / "c")])
    assert "--n must be at least 1" in capsys.readouterr().err


def _keys_per_rank(stream_factory, world: int, workers: int, monkeypatch) -> list[list[str]]:
    keys = []
    for rank in range(world):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: world)
        loader = torch.utils.data.DataLoader(stream_factory(), batch_size=None, num_workers=workers)
        keys.append([k for batch in loader for k in batch["key"]])
    monkeypatch.undo()
    return keys


@pytest.mark.parametrize("shards", [2, 7])  # fewer shards than readers (sample split) and more (shard split)
def test_eval_split_over_two_ranks_is_disjoint_and_complete(tmp_path, monkeypatch, shards):
    all_keys = []
    for s in range(shards):
        keys = [f"s{s}_{i}" for i in range(5)]
        write_shard(tmp_path / f"shard-{s:06d}.tar", [good_sample(k, 16) for k in keys])
        all_keys += keys
    urls = expand_shards(str(tmp_path / f"shard-{{000000..{shards - 1:06d}}}.tar"))
    per_rank = _keys_per_rank(lambda: ShardStream(urls, 4), world=2, workers=2, monkeypatch=monkeypatch)
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(all_keys)


def test_train_split_gives_every_rank_the_same_number_of_batches(tmp_path, monkeypatch):
    for s in range(3):
        write_shard(tmp_path / f"shard-{s:06d}.tar", [good_sample(f"s{s}_{i}", 16) for i in range(7)])
    urls = expand_shards(str(tmp_path))
    per_rank = _keys_per_rank(
        lambda: ShardStream(urls, 4, mode="train", batches_per_rank=2, shuffle_buffer=8),
        world=2,
        workers=2,
        monkeypatch=monkeypatch,
    )
    assert [len(keys) for keys in per_rank] == [8, 8]
    assert set(per_rank[0]).isdisjoint(per_rank[1])  # one pass over 21 samples, 16 drawn


def test_bad_samples_are_skipped_counted_and_never_crash(tmp_path, caplog):
    corrupt = good_sample("corrupt")
    corrupt["png"] = corrupt["png"][:40]
    missing = good_sample("missing")
    del missing["landmarks.npy"]
    wrong = good_sample("wrong")
    wrong["landmarks.npy"] = encode_array(np.zeros((5, 2), np.float32))
    samples = [good_sample("a"), corrupt, good_sample("b"), missing, wrong, good_sample("c")]
    write_shard(tmp_path / "shard-000000.tar", samples)
    data = FaceDataModule(val=str(tmp_path / "shard-000000.tar"), batch_size=2, num_workers=0, image_size=32)
    data.setup("validate")
    batches = [data.on_after_batch_transfer(b, 0) for b in data.val_dataloader()]
    assert [k for b in batches for k in b.key] == ["a", "b", "c"]
    assert data.skipped_samples == 3
    assert "bad_image" in caplog.text and "missing_key" in caplog.text and "bad_landmarks" in caplog.text


def test_landmark_confidences_travel_through_shards_and_bad_ones_are_skipped(tmp_path, caplog):
    confidence = np.linspace(0, 1, 68, dtype=np.float32)
    carried = good_sample("carried")
    carried["confidence.npy"] = encode_array(confidence)
    outside = good_sample("outside")
    outside["confidence.npy"] = encode_array(confidence * 2)
    short = good_sample("short")
    short["confidence.npy"] = encode_array(confidence[:5])
    write_shard(tmp_path / "shard-000000.tar", [carried, outside, short, good_sample("plain")])
    data = FaceDataModule(val=str(tmp_path / "shard-000000.tar"), batch_size=4, num_workers=0, image_size=32)
    data.setup("validate")
    (batch,) = [data.on_after_batch_transfer(b, 0) for b in data.val_dataloader()]
    assert batch.key == ["carried", "plain"] and data.skipped_samples == 2
    torch.testing.assert_close(batch.confidence[0], torch.from_numpy(confidence))
    assert (batch.confidence[1] == 1).all()  # a sample without confidences trusts every landmark
    assert "confidence outside [0, 1]" in caplog.text and "confidence must be finite (68,)" in caplog.text


def test_a_pattern_that_matches_nothing_is_an_error_at_setup(tmp_path):
    data = FaceDataModule(train=str(tmp_path / "shard-{000000..000003}.tar"), num_workers=0)
    with pytest.raises(FileNotFoundError, match="data.train.*shard-000000.tar"):
        data.setup("fit")
    with pytest.raises(FileNotFoundError, match="matches no .tar"):
        expand_shards(str(tmp_path / "*.tar"))


def test_augmentation_moves_landmarks_with_the_pixels_and_mirrors_their_order():
    size = 96
    landmarks = torch.tensor(np.random.default_rng(0).uniform(30, 66, (1, 68, 2)), dtype=torch.float32)
    landmarks[0, 36], landmarks[0, 45] = torch.tensor([35.0, 40.0]), torch.tensor([60.0, 40.0])
    image = torch.zeros(1, 3, size, size)
    x, y = landmarks[0].round().long().T
    image[0, :, y, x] = 1.0
    image = torch.nn.functional.max_pool2d(image, 3, 1, 1)  # 3x3 dots
    batch = face_batch(image, landmarks, params={"shape": torch.zeros(1, 3)})
    batch.confidence = torch.linspace(0, 1, 68)[None]
    augment = FaceAugmentation(flip=1.0, rotate=10, scale=0.1, translate=0.05, colour_probability=0.0)
    out = augment(batch, torch.Generator().manual_seed(1))
    assert out.params is None and batch.params is not None  # ground truth no longer holds; the input is kept
    moved = out.landmarks[0]
    x, y = moved.round().long().T
    assert out.image[0, 0, y.clamp(0, size - 1), x.clamp(0, size - 1)].mean() > 0.5
    # after the flip, landmark 36 (the subject's right eye corner) is again on the image's left
    assert moved[36, 0] < moved[45, 0]
    assert out.confidence[0, 36] == batch.confidence[0, 45]  # confidences follow their landmarks


def test_datamodule_renders_synthetic_data_on_first_use(tmp_path):
    synthetic = SyntheticData(
        root=str(tmp_path / "synth"), train=12, val=4, samples_per_shard=6, options=SynthOptions(size=48)
    )
    data = FaceDataModule(synthetic=synthetic, batch_size=4, num_workers=0, image_size=48)
    data.prepare_data()
    assert (tmp_path / "synth" / "train" / "shard-000001.tar").is_file()
    data.setup("fit")
    assert len(data.train_dataloader()) == 3
    assert [b["image"].shape[0] for b in data.train_dataloader()] == [4, 4, 4]
    val_keys = [k for b in data.val_dataloader() for k in b["key"]]
    assert len(val_keys) == 4


@pytest.mark.parametrize("preset", ["synthetic", "prepared"])
def test_data_presets_parse_into_a_face_datamodule(preset, capsys):
    from tests.conftest import ROOT

    model = '--model={"class_path": "tests.toy.ToyRegression"}'
    with pytest.raises(SystemExit) as raised:
        main(["fit", model, "--config", str(ROOT / "configs" / "data" / f"{preset}.yaml"), "--print_config"])
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    assert "facegen.data.FaceDataModule" in printed and "flip: 0.5" in printed


def test_synth_with_a_missing_face_model_names_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    assert (
        main(
            [
                "synth",
                "--model",
                str(missing),
                "--n",
                "2",
                "--out",
                str(tmp_path / "o"),
                "--progress",
                "false",
            ]
        )
        == 2
    )
    assert f"face model file {missing} does not exist" in capsys.readouterr().err


def test_the_data_follow_the_task_and_refuse_settings_that_contradict_it(tmp_path):
    from facegen.data import CropOptions
    from facegen.data.batch import InputSpec

    spec = InputSpec(image_size=48, face_model="builtin", fov=20.0, fill=0.5)
    data = FaceDataModule(synthetic=SyntheticData(root=str(tmp_path), train=4, val=0), num_workers=0)
    data.follow_task(spec)
    assert data.image_size == 48 and (data.crop.size, data.crop.fill) == (48, 0.5)
    job = data._synth_job("train", 4, 0)
    assert (job.model, job.options.size, job.fov, job.fill) == ("builtin", 48, 20.0, 0.5)
    assert job.signature()["framing"] == {
        "fov": 20.0,
        "fill": 0.5,
    }  # shards of another framing are not reused

    contradictions = {
        "data.image_size 64 differs from the model's image size 48": dict(image_size=64),
        "data.crop size 224 and fill 0.55 differ from the model's 48 and 0.5": dict(
            crop=CropOptions(mask="skin")
        ),
        "data.synthetic.model 'other.npz' differs": dict(synthetic=SyntheticData(model="other.npz")),
        "data.synthetic.options.size 96 differs": dict(
            synthetic=SyntheticData(options=SynthOptions(size=96))
        ),
    }
    for message, settings in contradictions.items():
        with pytest.raises(ValueError, match=message):
            FaceDataModule(**settings).follow_task(spec)
    FaceDataModule(image_size=48, crop=CropOptions(size=48, fill=0.5)).follow_task(spec)  # agreeing is fine


def test_fast_decoding_gives_what_pil_gives():
    """8-bit JPEG/PNG through OpenCV, the rest (16-bit, alpha, palette) through PIL: the same pixels either way."""
    import io

    from PIL import Image

    from facegen.data.sample import _decode_pixels, _open_image

    rng = np.random.default_rng(0)
    smooth = np.clip(np.cumsum(rng.normal(0, 6, (48, 64, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    cases = []
    for mode, pixels, fmt in (
        ("RGB", smooth, "JPEG"),
        ("RGB", smooth, "PNG"),
        ("L", smooth[..., 0], "PNG"),
        ("RGBA", np.dstack([smooth, smooth[..., :1]]), "PNG"),
        ("I;16", smooth[..., 0].astype(np.uint16) * 257, "PNG"),
    ):
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode if mode != "I;16" else None).save(buffer, fmt)
        cases.append(buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(smooth).convert("P").save(buffer, "PNG")
    cases.append(buffer.getvalue())
    for data in cases:
        for grey, mode in ((False, "RGB"), (True, "L")):
            fast = _decode_pixels(data, grey).astype(int)
            reference = np.asarray(_open_image(data, mode)).astype(int)
            assert fast.shape == reference.shape
            assert np.abs(fast - reference).max() <= 1  # rounding of the grey conversion at most
    from PIL import UnidentifiedImageError

    with pytest.raises(UnidentifiedImageError):  # not an image for OpenCV either: PIL names the problem
        _decode_pixels(b"not an image", grey=False)


def test_shards_made_for_another_face_model_or_framing_are_refused_naming_the_remedy(tmp_path):
    import json

    from facegen.data.batch import InputSpec
    from facegen.errors import ConfigError
    from facegen.morphable.registry import load_face_model

    folder = tmp_path / "val"
    SynthJob("builtin", folder, 2, samples_per_shard=2, options=SynthOptions(size=32), progress=False).run()
    manifest = json.loads((folder / "manifest.json").read_text())
    builtin = load_face_model("builtin")
    assert manifest["face_model"] == {"name": builtin.name, "sha256": builtin.checksum()}
    assert manifest["image_size"] == 32 and set(manifest["framing"]) == {"fov", "fill"}

    def setup(spec: InputSpec) -> None:
        data = FaceDataModule(val=str(folder), batch_size=2, num_workers=0)
        data.follow_task(spec)
        data.setup("validate")

    spec = InputSpec(64, "builtin", manifest["framing"]["fov"], manifest["framing"]["fill"])
    setup(spec)  # the same model and framing; another crop size is resized
    model_file = tmp_path / "other.npz"
    arrays = builtin.to_arrays()
    arrays["mean"] = arrays["mean"] * 1.01  # another face model under another file
    np.savez(model_file, **arrays)
    with pytest.raises(ConfigError, match="data.val: the shards in .*val were rendered with face model"):
        setup(spec._replace(face_model=str(model_file)))
    with pytest.raises(ConfigError, match="were made with fill .*, the task uses 0.6; delete"):
        setup(spec._replace(fill=0.6))


def _synth_stream(**settings):
    from facegen.data.synth_stream import SynthStream

    job = SynthJob("builtin", "unused", 0, options=SynthOptions(size=32), progress=False)
    return SynthStream(job, 4, 3, **settings)


def _shapes(batches) -> torch.Tensor:
    return torch.cat([batch["params"]["shape"] for batch in batches])


def test_the_synthetic_stream_renders_new_faces_that_never_repeat_and_resumes_exactly(monkeypatch):
    import facegen.data.streams as streams

    stream = _synth_stream()
    first = list(stream)
    shapes = _shapes(first)
    assert len(first) == 3 and len(torch.unique(shapes, dim=0)) == 12  # no face twice in an epoch
    assert all(batch["image"].shape == (4, 3, 32, 32) for batch in first)
    stream.epoch = 1
    assert not (_shapes(list(stream))[:, None] == shapes[None]).all(-1).any()  # the next epoch: new faces
    resumed = _synth_stream()
    resumed.skip_batches = 1  # a run resumed after its first batch continues with the same faces
    tail = list(resumed)
    assert len(tail) == 2 and all(
        torch.equal(a["image"], b["image"]) for a, b in zip(tail, first[1:], strict=True)
    )
    faces = []
    for rank in (0, 1):  # two DDP ranks (readers) draw faces of their own
        monkeypatch.setattr(streams, "reader_identity", lambda rank=rank: (rank, 2))
        faces.append(_shapes(list(_synth_stream())))
    assert not (faces[0][:, None] == faces[1][None]).all(-1).any()


def test_the_datamodule_streams_synthetic_training_faces_and_writes_no_training_shards(tmp_path):
    from facegen.data.synth_stream import SynthStream

    synthetic = SyntheticData(root=str(tmp_path / "synth"), train=16, val=4, samples_per_shard=4, stream=True)
    data = FaceDataModule(synthetic=synthetic, batch_size=4, num_workers=0, image_size=32)
    data.prepare_data()
    assert (
        not (tmp_path / "synth" / "train").exists()
        and (tmp_path / "synth" / "val" / "manifest.json").is_file()
    )
    data.setup("fit")
    assert isinstance(data.streams["train"], SynthStream) and len(data.streams["train"]) == 4
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32)


def _photo_shards(folder, count: int = 24, per_shard: int = 8) -> list[str]:
    """Shards of ``count`` stand-in photos (flat grey crops, 32²) keyed photo_000..."""
    folder.mkdir(parents=True, exist_ok=True)
    urls = []
    for shard in range(count // per_shard):
        path = folder / f"photos-{shard:06d}.tar"
        keys = range(shard * per_shard, (shard + 1) * per_shard)
        write_shard(path, [good_sample(f"photo_{k:03d}") for k in keys])
        urls.append(str(path))
    return urls


def _mixed_stream(urls, **settings):
    from facegen.data.synth_stream import MixedStream

    job = SynthJob("builtin", "unused", 0, options=SynthOptions(size=32), progress=False)
    return MixedStream(urls, job, 0.25, 4, 4, shuffle_buffer=8, **settings)


def test_the_mixed_stream_puts_new_faces_into_every_batch_of_photos_and_resumes_exactly(
    tmp_path, monkeypatch
):
    import facegen.data.streams as streams

    urls = _photo_shards(tmp_path / "photos", count=32)  # 4 shards: 2 per reader when there are two
    first = list(_mixed_stream(urls))
    keys = [key for batch in first for key in batch["key"]]
    assert len(first) == 4 and all(batch["image"].shape == (4, 3, 32, 32) for batch in first)
    assert all(sum(key.startswith("synth_") for key in batch["key"]) == 1 for batch in first)  # a quarter
    photos = [key for key in keys if key.startswith("photo_")]
    assert len(set(photos)) == len(photos) == 12 and all("params" not in batch for batch in first)
    faces = [batch["image"][[k.startswith("synth_") for k in batch["key"]]] for batch in first]
    assert all(face.float().std() > 10 for face in faces)  # rendered faces, not the photos' flat grey
    resumed = _mixed_stream(urls)
    resumed.skip_batches = 2  # resumed after two batches: the same photos and faces as the first sitting
    tail = list(resumed)
    assert [b["key"] for b in tail] == [b["key"] for b in first[2:]]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(tail, first[2:], strict=True))
    later = _mixed_stream(urls)
    later.epoch = 1  # the next epoch: the photos reshuffled, new faces
    again = list(later)
    assert [b["key"] for b in again] != [b["key"] for b in first]
    new_faces = torch.cat([b["image"][[k.startswith("synth_") for k in b["key"]]] for b in again])
    assert not (new_faces[:, None] == torch.cat(faces)[None]).flatten(2).all(-1).any()
    photos_of, faces_of = [], []
    for rank in (0, 1):  # two DDP ranks read shards and draw faces of their own
        monkeypatch.setattr(streams, "reader_identity", lambda rank=rank: (rank, 2))
        batches = list(_mixed_stream(urls))
        photos_of.append({key for batch in batches for key in batch["key"] if key.startswith("photo_")})
        faces_of.append(torch.cat([b["image"][[k.startswith("synth_") for k in b["key"]]] for b in batches]))
    assert not photos_of[0] & photos_of[1]
    assert not (faces_of[0][:, None] == faces_of[1][None]).flatten(2).all(-1).any()


def test_the_datamodule_mixes_new_faces_into_photo_shards_and_refuses_a_mix_it_cannot_make(tmp_path):
    from facegen.data.synth_stream import MixedStream
    from facegen.errors import ConfigError

    urls = _photo_shards(tmp_path / "photos")
    synthetic = SyntheticData(root=str(tmp_path / "synth"), val=0, stream=True, mix=0.5)
    data = FaceDataModule(train=urls, synthetic=synthetic, batch_size=4, num_workers=0, image_size=32)
    data.setup("fit")
    stream = data.streams["train"]
    assert isinstance(stream, MixedStream) and len(stream) == 12  # 24 photos, half of each batch of 4
    batch = next(iter(data.train_dataloader()))
    assert sum(key.startswith("synth_") for key in batch["key"]) == 2
    refused = {
        "mix 0 beside photos": ({"stream": True, "mix": 0.0}, urls, "set data.synthetic.mix to their share"),
        "mix 1": ({"stream": True, "mix": 1.0}, urls, "between 0 and 1"),
        "mix without photos": ({"stream": True, "mix": 0.5}, None, "data.train's photos, which is not set"),
        "mix without stream": ({"mix": 0.5}, urls, "set data.synthetic.stream: true"),
    }
    for settings, train, message in refused.values():
        with pytest.raises(ConfigError, match=message):
            FaceDataModule(train=train, synthetic=SyntheticData(root=str(tmp_path / "s"), **settings))
    truth = FaceDataModule(
        train=urls, synthetic=synthetic, batch_size=4, image_size=32, train_ground_truth=True
    )
    with pytest.raises(ConfigError, match="data.train_ground_truth: photos have no ground truth"):
        truth.setup("fit")
