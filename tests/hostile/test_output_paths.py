"""Writes stay inside ``--out``: shard keys with ``..``, absolute paths and separators, duplicate keys, and a
shard's metadata naming a file to read as "the photo"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from facegen.cli import main
from facegen.data.keys import OutputNames
from facegen.data.sample import encode_sample
from facegen.export.files import child_folder
from tests.data_helpers import good_sample, sample_members, write_raw_tar

SIZE = 32


def predict_on_shard(folder: Path, shard: Path, out: Path) -> dict:
    config = {
        "trainer": {
            "accelerator": "cpu",
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(folder),
        },
        "model": {
            "class_path": "facegen.tasks.MoFA",
            "init_args": {"image_size": SIZE, "depths": [1], "width": 8, "fit": None},
        },
        "data": {
            "class_path": "facegen.data.FaceDataModule",
            "init_args": {"predict": str(shard), "batch_size": 8, "num_workers": 0, "image_size": SIZE},
        },
    }
    path = folder / "predict.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["predict", "--config", str(path), "--out", str(out), "--texture_size", "16"]) == 0
    return json.loads((out / "summary.json").read_text())


def test_hostile_keys_never_leave_out_and_never_overwrite_each_other(tmp_path):
    outside = tmp_path / "outside"
    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((90, 70, 3), 7, np.uint8)).save(secret)
    crafted = good_sample("x", SIZE)
    meta = {"source": "x", "photo_path": str(secret), "transform": [[1, 0, 0], [0, 1, 0]]}
    crafted = encode_sample("x", crafted["png"], np.zeros((68, 2)) + 10, meta, image_format="png")
    keys = ["../escape", f"{outside}/absolute", "a/b", "a_b", "dup", "dup"]
    members = [m for key in keys for m in sample_members(key, good_sample(key, SIZE))]
    members += sample_members("photo_from_json", crafted)
    for name, transform in (
        ("singular", [[0, 0, 0], [0, 0, 0]]),
        ("text", "x"),
        ("nan", [[float("nan")] * 3] * 2),
    ):
        odd = encode_sample(
            name, crafted["png"], np.zeros((68, 2)) + 10, {"transform": transform}, image_format="png"
        )
        members += sample_members(name, odd)
    shard = write_raw_tar(tmp_path / "hostile.tar", members)
    out = tmp_path / "run" / "out"
    summary = predict_on_shard(tmp_path, shard, out)

    assert not (tmp_path / "run" / "escape").exists() and not outside.exists()
    written = [p for p in tmp_path.rglob("code.json")]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in written) and len(written) == 9
    assert summary["faces_written"] == 9 and len(set(summary["written"])) == 9
    assert {"a_b"} <= set(summary["written"]) and any(n.startswith("a_b-") for n in summary["written"])
    (duplicate,) = summary["failed"]
    assert duplicate["face"] == "dup" and "duplicate" in duplicate["error"]
    # the shard's json cannot make predict read a file: the overlay is drawn on the crop, not on "the photo"
    record = json.loads((out / "photo_from_json" / "code.json").read_text())
    assert record["photo_path"] is None
    assert Image.open(out / "photo_from_json" / "overlay.jpg").size == (SIZE, SIZE)


def test_output_names_are_safe_unique_and_case_insensitive():
    names = OutputNames()
    given = ["face_f0", "../x", "/etc/passwd", "a/b", "a_b", "A_B", ".", "..", "", "ñ", "é", "-rf"]
    made = [names.name(key) for key in given]
    assert made[0] == "face_f0" and made[4] == "a_b"
    assert len({m.lower() for m in made}) == len(given)
    assert all(m and "/" not in m and "\\" not in m and not m.startswith((".", "-")) for m in made)
    assert names.name("a/b") is None  # the same key twice in one run


def test_child_folder_refuses_to_leave_the_root(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert child_folder(root, "face_f0") == root / "face_f0"
    for name in ("..", "../x", "a/b", "link"):
        with pytest.raises(PermissionError, match="outside the output folder"):
            child_folder(root, name)
