"""User mistakes end in one line, ``facegen: error: ...`` naming the setting or file, exit code 2, no traceback;
``--debug`` shows the traceback. Also: ``fit: null`` works with the quickstart config, and converted
models keep normal file permissions."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch
import yaml

from facegen.cli import main, user_error
from facegen.errors import ConfigError
from facegen.morphable.builtin import builtin_model
from facegen.tasks import LossWeights, MoFA
from tests.conftest import ROOT
from tests.data_helpers import face_batch

QUICKSTART = str(ROOT / "configs" / "mofa.yaml")
TEXTURE = str(ROOT / "configs" / "texture_gan.yaml")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mistakes")
    (folder / "a_file").write_text("not a folder")
    (folder / "random.npz").write_bytes(os.urandom(3000))
    np.savez(folder / "objects.npz", schema_version=np.array([{"x": 1}], dtype=object))
    builtin_model().save(folder / "model.npz")
    data = (folder / "model.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(folder / "fake.ckpt", "w") as archive:
        archive.writestr("archive/data.pkl", b"not a pickle")
    (folder / "truncated.ckpt").write_bytes(b"PK\x03\x04" + os.urandom(500))
    return folder


def mistakes(folder):
    fit = ["fit", "--config", QUICKSTART]
    predict = ["predict", "--config", QUICKSTART, "--data.init_args.predict_dir", str(folder)]
    return {
        "batch size 0": ([*fit, "--data.init_args.batch_size", "0"], "data.batch_size must be at least 1"),
        "negative image size": (
            [*fit, "--model.init_args.image_size", "-5"],
            "model.image_size must be at least 16",
        ),
        "missing face model": (
            [*fit, "--model.init_args.face_model", str(folder / "nope.npz")],
            "nope.npz does not exist",
        ),
        "face model not an npz": (
            [*fit, "--model.init_args.face_model", str(folder / "random.npz")],
            "random.npz: not a .npz archive (truncated or corrupt",
        ),
        "truncated face model": (
            ["model", "info", str(folder / "truncated.npz")],
            "truncated.npz: not a .npz archive (truncated",
        ),
        "face model with objects": (
            ["model", "info", str(folder / "objects.npz")],
            "holds Python objects, which facegen never loads",
        ),
        "bad devices": ([*fit, "--trainer.devices", "-3"], "trainer: `devices`"),
        "--out is a file": ([*predict, "--out", str(folder / "a_file")], "a_file is a file, not a folder"),
        "--out under a file": (
            [*predict, "--out", str(folder / "a_file" / "sub")],
            "cannot create the folder",
        ),
        "texture size 0": (
            [*predict, "--out", str(folder / "o"), "--texture_size", "0"],
            "--texture_size must be at least 1",
        ),
        "truncated checkpoint": (
            [*predict, "--ckpt_path", str(folder / "truncated.ckpt")],
            "truncated.ckpt: truncated or not a PyTorch checkpoint",
        ),
        "corrupt checkpoint": (
            [*predict, "--ckpt_path", str(folder / "fake.ckpt")],
            "fake.ckpt: not a readable checkpoint",
        ),
        "missing checkpoint": (
            [*predict, "--ckpt_path", str(folder / "gone.ckpt")],
            "gone.ckpt does not exist",
        ),
        "no photos": (
            ["predict", "--config", QUICKSTART, "--data.init_args.predict_dir", str(folder / "none")],
            "data.predict_dir",
        ),
        "negative synth size": (
            ["synth", "--out", str(folder / "s"), "--n", "2", "--options.size", "-3"],
            "options.size must be at least 16",
        ),
        "image size given twice, differently": (
            [*fit, "--data.init_args.image_size", "64"],
            "data.image_size 64 differs from the model's image size 128",
        ),
        "synthetic faces of another model": (
            [*fit, "--data.init_args.synthetic.model", str(folder / "other.npz")],
            "data.synthetic.model",
        ),
        "texture model without its MoFA": (
            ["fit", "--config", TEXTURE, "--model.init_args.mofa.checkpoint", str(folder / "gone.ckpt")],
            "gone.ckpt does not exist: train MoFA first",
        ),
        "unknown choice": (
            [*fit, "--model.init_args.photometric", "pixels"],
            "model.photometric: Expected a typing.Literal['points', 'raster']. Got value: pixels",
        ),
        "unknown format": (
            ["model", "convert", "npz", "--source", str(folder / "a_file"), "--out", str(folder / "m.npz")],
            "a_file",
        ),
    }


#: Mistakes that can only be found once the trainer exists (the photo folder is read at setup).
FOUND_AT_SETUP = ("no photos", "image size given twice, differently", "synthetic faces of another model")


@pytest.mark.parametrize("case", list(mistakes(ROOT)))
def test_a_user_mistake_is_one_line(case, files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    args, expected = mistakes(files)[case]
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(errors) == 1, err
    assert errors[0].startswith("facegen: error: ") and expected in errors[0], errors[0]
    if case not in FOUND_AT_SETUP:
        assert not list(tmp_path.iterdir())  # refused before anything was built or written


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as raised:  # jsonargparse's error, raised from facegen's
        main(["fit", "--config", QUICKSTART, "--data.init_args.batch_size", "0", "--debug"])
    assert isinstance(user_error(raised.value), ConfigError)


def test_fitting_off_works_with_the_quickstart_config(monkeypatch):
    """``--model.init_args.fit null`` with the quickstart's ``validate_fitted: 1``."""
    init = yaml.safe_load(open(QUICKSTART))["model"]["init_args"]
    weights = LossWeights(**init.get("weights", {}))
    model = MoFA(**{**init, "weights": weights, "fit": None, "depths": [1], "width": 8, "image_size": 32})
    monkeypatch.setattr(model, "fitted", lambda *args: pytest.fail("fitted although fit is null"))
    batch = face_batch(torch.rand(2, 3, 32, 32), torch.rand(2, 68, 2) * 31)
    model.validation_step(batch, 0)


def test_converted_models_are_readable_by_others(tmp_path):
    path = builtin_model().save(tmp_path / "model.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_only_errors_raised_from_a_user_error_are_shortened():
    def raised(function):
        try:
            function()
        except Exception as error:
            return error

    def wrapped():
        try:
            raise FileNotFoundError("settings.yaml")
        except FileNotFoundError as error:
            raise ValueError("jsonargparse's wrapper") from error

    def bug_while_handling():
        try:
            raise FileNotFoundError("settings.yaml")
        except FileNotFoundError:
            raise KeyError("a bug")  # noqa: B904 - only the implicit context links it to the user error

    assert isinstance(user_error(raised(wrapped)), FileNotFoundError)
    assert user_error(raised(bug_while_handling)) is None
