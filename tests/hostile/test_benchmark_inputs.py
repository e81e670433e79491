"""Round two of the hostile-input trial, benchmarks and configs: evaluate's inputs of the wrong kind give one
line naming the file or setting (before any prediction runs), NoW list entries never share a result, a shard
where nothing decodes fails validation instead of passing it empty, and a YAML error names its place."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.cli import main
from facegen.commands.now_benchmark import read_now, read_scans
from facegen.data import FaceDataModule
from facegen.errors import BadFileError, ConfigError
from facegen.evaluation.aflw2000 import read_aflw2000
from tests.data_helpers import undecodable_shard
from tests.test_evaluate import _landmarks, write_aflw


def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("facegen: error:") and "\n" not in error, error
    return error


@pytest.mark.parametrize(("setting", "value"), [("--n", "0"), ("--limit", "-1")])
def test_evaluate_refuses_counts_below_one_in_one_line(tmp_path, setting, value, capsys):
    args = ["evaluate", "synthetic", "--config", "configs/mofa.yaml", "--out", str(tmp_path), setting, value]
    assert main(args) == 2
    assert f"{setting} must be at least 1, got {value}" in _one_line_error(capsys)


def test_a_reannotation_that_is_an_npz_or_an_all_nan_annotation_names_the_file(tmp_path):
    write_aflw(tmp_path, {"image00001": (_landmarks(0), (0.0, 0.0, 0.0))})
    np.savez(tmp_path / "re.npz", points=np.zeros((1, 68, 2)))
    with pytest.raises(BadFileError, match="re.npz: not a numeric .npy array \\(an .npz archive\\)"):
        read_aflw2000(tmp_path, tmp_path / "re.npz")
    write_aflw(tmp_path, {"image00001": (np.full((68, 2), np.nan), (0.0, 0.0, 0.0))})
    with pytest.raises(BadFileError, match="image00001.mat: pt3d_68 holds NaN"):
        read_aflw2000(tmp_path)


def _now_root(tmp_path, listed: list[str]):
    root = tmp_path / "NoW"
    for relative in listed:
        photo = root / "iphone_pictures" / relative
        photo.parent.mkdir(parents=True, exist_ok=True)
        photo.write_bytes(b"jpeg")
    (root / "imagepathsvalidation.txt").write_text("\n".join(listed) + "\n")
    return root


def test_now_entries_that_flatten_alike_keep_apart_and_an_empty_list_names_itself(tmp_path):
    root = _now_root(tmp_path, ["a/b__c.jpg", "a__b/c.jpg", "a/b__c.jpg"])
    items = read_now(root)
    assert [i.relative for i in items] == ["a/b__c.jpg", "a__b/c.jpg"]  # the repeated entry once
    assert len({i.name.lower() for i in items}) == 2
    (root / "imagepathsvalidation.txt").write_text("\n")
    with pytest.raises(ConfigError, match="imagepathsvalidation.txt lists no photos"):
        read_now(root)


def test_a_malformed_now_scan_is_named_before_anything_is_predicted(tmp_path):
    root = _now_root(tmp_path, ["FaMoS_1/selfie/IMG_0001.jpg"])
    (root / "scans" / "FaMoS_1").mkdir(parents=True)
    (root / "scans" / "FaMoS_1" / "scan.obj").write_text("v 1 2 x\nf 1 2 3\n")
    (root / "scans_lmks_onlypp" / "FaMoS_1").mkdir(parents=True)
    (root / "scans_lmks_onlypp" / "FaMoS_1" / "scan_picked_points.pp").write_text("<PickedPoints/>")
    with pytest.raises(BadFileError, match="scan.obj: not a readable .obj scan"):
        read_scans(root, read_now(root))


def test_validation_where_no_sample_decodes_fails_naming_the_shard(tmp_path):
    shard = undecodable_shard(tmp_path / "shard-000000.tar", 3)
    data = FaceDataModule(val=str(shard), batch_size=2, num_workers=0, image_size=32)
    data.setup("validate")
    with pytest.raises(BadFileError, match="no usable sample in 1 shard.*shard-000000.tar.*all 3 were bad"):
        list(data.val_dataloader())


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("trainer:\n  max_steps: [1\nmodel: 2\n")
    assert main(["fit", "--config", str(config)]) == 2
    assert f"{config}: not valid YAML at line 3, column 6" in _one_line_error(capsys)


def test_a_copied_config_whose_fit_preset_does_not_resolve_says_how_to_name_it(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text("model:\n  class_path: facegen.tasks.MoFA\n  init_args:\n    fit: fit/standard.yaml\n")
    assert main(["fit", "--config", str(config)]) == 2
    error = _one_line_error(capsys)
    assert "model.init_args.fit names fit/standard.yaml, which is not a file relative to this config" in error


def test_the_calibration_and_learning_curve_scripts_refuse_bad_settings_in_one_line(tmp_path, monkeypatch):
    """benchmarks/calibrate_landmarks.py and learning_curve.py: zero rounds or step budgets, photos without a face,
    a results file without results: each one line (SystemExit's message) before any work."""
    from pathlib import Path

    root = Path(__file__).parents[2]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    from calibrate_landmarks import main as calibrate
    from learning_curve import main as curve
    from PIL import Image

    (tmp_path / "empty").mkdir()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(
        tmp_path / "empty" / "grey.png"
    )  # no face, no landmark file
    with pytest.raises(SystemExit, match=r"^--rounds 0: give 1 or more$"):
        calibrate(["--photos", str(tmp_path), "--rounds", "0", "--out", str(tmp_path / "x.txt")])
    config = str(root / "configs" / "mofa.yaml")
    with pytest.raises(SystemExit, match=r"^--photos .*empty: files found no face; give other photos$"):
        calibrate(
            ["--config", config, "--photos", str(tmp_path / "empty"), "--detector", "files", "--out", "x"]
        )
    with pytest.raises(SystemExit, match=r"^--steps \[0, 10\]: budgets are positive step counts$"):
        curve(["--steps", "0", "10", "--out", str(tmp_path / "curve")])
    (tmp_path / "curve.jsonl").write_text("\n")
    with pytest.raises(SystemExit, match="no results in these files"):
        curve(["--plot", str(tmp_path / "curve.jsonl"), "--figure", str(tmp_path / "c.png")])
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "c.png").exists()
