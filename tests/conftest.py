"""Shared fixtures: tiny generated data, the shared real assets (skipped when absent: they live beside the
project, never in it, and CI's clean clone has none), a real photo that ships in a PyPI package and the
downloadable landmark models (both skipped when absent, but failing under ``CI=true``: CI installs and fetches
them, so a skip there would hide a broken real-photo path), a clean working dir."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def assets_root() -> Path | None:
    """``$FACEGEN_ASSETS`` or ``../shared/assets`` beside the project root, if present."""
    candidates = [os.environ.get("FACEGEN_ASSETS"), ROOT.parent / "shared" / "assets"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def skip_unless_ci(reason: str) -> None:
    """Skip with ``reason``, or fail under ``CI=true``, where what is missing must be there."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def assets() -> Path:
    root = assets_root()
    if root is None:
        pytest.skip("shared assets not found: set FACEGEN_ASSETS or place them at ../shared/assets")
    return root


@pytest.fixture(scope="session")
def ict_npz(assets: Path) -> Path:
    path = assets / "ict" / "ict_face_model.npz"
    if not path.is_file():
        pytest.skip(f"{path} not found in the shared assets")
    return path


@pytest.fixture(scope="session")
def packaged_photo() -> Path:
    """scikit-image's astronaut (NASA, public domain), a real face photo inside the scikit-image wheel (the
    ``dev`` extra), so the photo path is tested where the shared assets are not."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    path = (
        None if spec is None else Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png"
    )
    if path is None or not path.is_file():
        skip_unless_ci("scikit-image's astronaut photo is not installed: pip install scikit-image")
    return path


@pytest.fixture(scope="session")
def litert_models() -> Path:
    """The folder of MediaPipe's models for the ``litert`` and ``dlib`` backends (``facegen fetch --detector
    dlib`` puts them there; ``make test`` runs it first)."""
    from facegen.data.detection.litert_face import MODELS, model_folder
    from facegen.morphable.download import cache_folder

    folder = model_folder(cache_folder())
    if not all((folder / name).is_file() for name in MODELS):
        skip_unless_ci(f"MediaPipe's models are not in {folder}: run `facegen fetch --detector dlib`")
    return folder


@pytest.fixture(scope="session")
def builtin():
    from facegen.morphable.builtin import builtin_model

    return builtin_model()


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run the test inside its own temporary folder (logs, configs and checkpoints land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_tensors(tmp_path) -> Path:
    """A tiny regression data set on disk (x: (64, 4), y: (64,)) for CLI plumbing tests."""
    generator = np.random.default_rng(0)
    x = generator.standard_normal((64, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32)).astype(np.float32)
    path = tmp_path / "tiny.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def ict_facegen_npz(ict_npz, tmp_path_factory) -> Path:
    """The shared ICT model converted to facegen's canonical .npz (face region, to stay small)."""
    from facegen.morphable.registry import convert

    path = tmp_path_factory.mktemp("ict") / "ict_face.npz"
    convert("ict", ict_npz, region="face").save(path)
    return path


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory) -> Path:
    """Synthetic shards of the built-in model at 48 px: 24 training faces (3 shards) and 8 validation faces."""
    from facegen.data import SynthOptions
    from facegen.data.synth import SynthJob

    root = tmp_path_factory.mktemp("mofa_data")
    options = SynthOptions(size=48)
    SynthJob(
        "builtin", root / "train", 24, samples_per_shard=8, seed=0, options=options, progress=False
    ).run()
    SynthJob("builtin", root / "val", 8, samples_per_shard=8, seed=1, options=options, progress=False).run()
    return root
