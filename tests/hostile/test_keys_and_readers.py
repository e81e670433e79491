"""No silent data loss: colliding photo names, damaged tar files, duplicate keys, high-bit-depth images; no
endless loops on shards where nothing decodes; errors that name the file."""

from __future__ import annotations

import io
import json
import signal
import struct
import tarfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegen.cli import main
from facegen.data import FaceDataModule
from facegen.data.keys import unique_stems
from facegen.data.landmarks import write_pts
from facegen.data.photos import decode_image
from facegen.data.sample import decode_sample
from facegen.data.streams import ShardStream, count_samples, expand_shards
from facegen.data.tar_reader import group_samples, iter_tar_files
from facegen.errors import BadFileError
from tests.data_helpers import (
    face_photo,
    good_sample,
    sample_members,
    template_landmarks,
    undecodable_shard,
    write_raw_tar,
    write_shard,
)


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``."""

    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_photo_names_that_collide_after_sanitising_get_distinct_keys(tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    names = ["ñ.png", "é.png", "x.jpg", "x.png", "a/b.png", "a_b.png", "Case.png", "case.png"]
    for i, name in enumerate(names):
        landmarks = template_landmarks(0.5, (120, 120))
        Image.fromarray(face_photo((240, 240), landmarks, seed=i)).save(folder / name)
        write_pts((folder / name).with_suffix(".pts"), landmarks)
    out = tmp_path / "shards"
    assert (
        main(
            [
                "prepare",
                "--input",
                str(folder),
                "--out",
                str(out),
                "--detector",
                "files",
                "--size",
                "32",
                "--photos-per-shard",
                "3",
                "--progress",
                "false",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["faces"] == len(names)
    manifest = json.loads((out / "manifest.json").read_text())
    keys = [s["key"] for s in manifest["samples"]]
    assert len({k.lower() for k in keys}) == len(names)
    read = [k for batch in ShardStream(expand_shards(str(out)), 4) for k in batch["key"]]
    assert sorted(read) == sorted(keys)  # nothing merged by the reader
    assert unique_stems(["p.jpg", "q/r.png"]) == {
        "p.jpg": "p",
        "q/r.png": "q_r",
    }  # unique names stay readable


def test_duplicate_keys_in_a_shard_are_passed_on_not_merged(tmp_path):
    first, second = good_sample("k", value=10), good_sample("k", value=200)
    shard = write_raw_tar(tmp_path / "dup.tar", [*sample_members("k", first), *sample_members("k", second)])
    with shard.open("rb") as stream:
        samples = list(group_samples(iter_tar_files(stream)))
    assert [s["__key__"] for s in samples] == ["k", "k"]
    assert [decode_sample(s)["image"].mean() for s in samples] == [10, 200]


def test_the_reader_gives_what_tarfile_reads(tmp_path):
    shard = tmp_path / "good.tar"
    write_shard(shard, [good_sample(f"s{i}") for i in range(3)])
    with tarfile.open(shard) as archive:
        expected = [(m.name, archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile()]
    with shard.open("rb") as stream:
        assert list(iter_tar_files(stream)) == expected


def _damaged_shards(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.tar"
    write_shard(good, [good_sample(f"s{i}") for i in range(3)])
    data = good.read_bytes()
    first_member = 512 + -(-int(data[124:136].strip(b"\0 "), 8) // 512) * 512  # header + padded data
    shards = {
        "empty_file": b"",
        "cut_in_header": data[:700],
        "cut_at_member": data[:first_member],
        "not_a_tar": b"PK\x03\x04" + bytes(2000),
        "cut_in_data": data[: len(data) // 2],
        # one byte of the second member's header name flipped: its checksum no longer matches
        "corrupt_header": data[:first_member] + bytes([data[first_member] ^ 1]) + data[first_member + 1 :],
    }
    paths = {}
    for name, content in shards.items():
        paths[name] = tmp_path / f"{name}.tar"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_damaged_tar_files_raise_naming_the_file(tmp_path, mode):
    for name, path in _damaged_shards(tmp_path).items():
        stream = ShardStream([str(path)], 2, mode=mode, batches_per_rank=2 if mode == "train" else None)
        with deadline(30), pytest.raises(BadFileError, match=path.name):
            list(stream)
        if name in ("empty_file", "not_a_tar"):
            with pytest.raises(BadFileError, match=path.name):
                count_samples([str(path)])


def test_an_empty_archive_raises_instead_of_validating_nothing(tmp_path):
    empty = write_raw_tar(tmp_path / "empty.tar", [])
    data = FaceDataModule(val=str(empty), batch_size=2, num_workers=0, image_size=32)
    data.setup("validate")
    with pytest.raises(BadFileError, match="empty.tar holds no sample"):
        list(data.val_dataloader())


def test_a_training_shard_where_nothing_decodes_raises_after_one_pass(tmp_path):
    shard = undecodable_shard(tmp_path / "shard-000000.tar", 4)
    stream = ShardStream([str(shard)], 2, mode="train", batches_per_rank=3)
    with deadline(30), pytest.raises(BadFileError, match="no usable sample.*bad_image"):
        list(stream)


def test_fit_on_a_file_that_is_not_a_tar_is_one_line_naming_it(tmp_path, capsys):
    fake = tmp_path / "train.tar"
    fake.write_text("this is not a tar archive\n" * 100)
    code = main(
        [
            "fit",
            "--model",
            "facegen.tasks.MoFA",
            "--model.init_args.image_size",
            "32",
            "--data",
            "facegen.data.FaceDataModule",
            "--data.init_args.train",
            str(fake),
            "--data.init_args.num_workers",
            "0",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("facegen: error: shard") and "train.tar" in err


def test_16_bit_images_are_scaled_not_clipped_to_white(tmp_path):
    grey16 = np.full((32, 32), 32896, np.uint16)  # 128 * 257: mid grey
    buffer = io.BytesIO()
    Image.fromarray(grey16).save(buffer, format="PNG")
    assert np.abs(decode_image(buffer.getvalue(), "grey16.png").astype(int) - 128).max() <= 1
    sample = good_sample("g")
    sample["png"] = buffer.getvalue()
    assert np.abs(decode_sample(sample)["image"].astype(int) - 128).max() <= 1
    floats = io.BytesIO()
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(floats, format="TIFF")
    assert np.abs(decode_image(floats.getvalue(), "float.tif").astype(int) - 128).max() <= 1


@pytest.mark.parametrize(
    "format, keep",
    [
        ("JPEG", 0.5),
        ("JPEG", 0.999),
        ("PNG", 0.5),
        ("PNG", 0.95),
    ],  # a PNG that lacks only its end chunk is whole
)
def test_a_truncated_photo_is_unreadable_not_half_grey(format, keep):
    from facegen.data.photos import UnreadableImage

    pixels = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    data = buffer.getvalue()
    assert decode_image(data, "whole").shape == (64, 96, 3)
    with pytest.raises(UnreadableImage, match="cut"):
        decode_image(data[: int(len(data) * keep)], "cut")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with no pixel data (a decompression bomb's
    header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_a_decompression_bomb_photo_is_rejected_and_the_others_go_on(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(_png_header_only(40000, 40000))
    landmarks = template_landmarks(0.5, (120, 120))
    Image.fromarray(face_photo((240, 240), landmarks)).save(folder / "good.png")
    write_pts(folder / "good.pts", landmarks)
    args = [
        "prepare",
        "--input",
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--detector",
        "files",
        "--size",
        "32",
        "--progress",
        "false",
    ]
    with deadline(60):
        assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["faces"] == 1 and summary["reject_counts"]["unreadable"] == 1


def test_a_tar_header_claiming_a_huge_member_is_truncated_not_allocated(tmp_path):
    good = tmp_path / "good.tar"
    write_shard(good, [good_sample("s")])
    header = bytearray(good.read_bytes()[:512])
    header[124:136] = b"77777777777\0"  # 8 GiB
    header[148:156] = b"        "
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    huge = tmp_path / "huge.tar"
    huge.write_bytes(bytes(header) + bytes(4096))
    with deadline(30), pytest.raises(BadFileError, match="huge.tar: truncated"):
        list(ShardStream([str(huge)], 2))
