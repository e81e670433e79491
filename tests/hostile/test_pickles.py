"""No code from data: pickles (FLAME model, landmark embedding, checkpoints) whose payload would create a file
are refused before anything runs, with a one-line error."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch

from facegen.cli import main
from facegen.errors import UnsafeFileError
from facegen.morphable.registry import convert
from facegen.safe_pickle import PickledObject, load_pickle


class Payload:
    """Unpickling this runs ``touch marker`` with the standard unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def flame_arrays(n: int = 12) -> dict:
    rng = np.random.default_rng(0)
    faces = np.array([[i, (i + 1) % n, (i + 2) % n] for i in range(n)], np.uint32)
    return {"v_template": rng.random((n, 3)), "shapedirs": rng.random((n, 3, 302)) * 1e-3, "f": faces}


def embedding(faces: int = 12) -> np.ndarray:
    rng = np.random.default_rng(1)
    fields = {
        "full_lmk_faces_idx": rng.integers(0, faces, (1, 68)),
        "full_lmk_bary_coords": rng.dirichlet(np.ones(3), (1, 68)),
    }
    return np.array(fields, dtype=object)


def test_flame_pickle_with_code_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    arrays = flame_arrays()
    arrays["kintree_table"] = Payload(marker)
    (tmp_path / "generic_model.pkl").write_bytes(pickle.dumps(arrays, protocol=2))
    np.save(tmp_path / "landmark_embedding.npy", embedding(), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match="generic_model.pkl: refusing to load 'posix.system'"):
        convert("flame", tmp_path)
    code = main(["model", "convert", "flame", "--source", str(tmp_path), "--out", str(tmp_path / "m.npz")])
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err.startswith("facegen: error: ") and "refusing to load" in err
    assert not marker.exists() and not (tmp_path / "m.npz").exists()


def test_landmark_embedding_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "generic_model.pkl").write_bytes(pickle.dumps(flame_arrays(), protocol=2))
    np.save(
        tmp_path / "landmark_embedding.npy",
        np.array({"full_lmk_faces_idx": Payload(marker)}, dtype=object),
        allow_pickle=True,
    )
    with pytest.raises(UnsafeFileError, match="landmark_embedding.npy: refusing to load"):
        convert("flame", tmp_path)
    assert not marker.exists()
    np.save(
        tmp_path / "landmark_embedding.npy", embedding(), allow_pickle=True
    )  # the real layout still loads
    assert convert("flame", tmp_path).landmark_indices.shape == (68,)


def test_allow_listed_content_loads_as_data():
    """Arrays, sparse matrices (kept as records of their state), sets and Python 2 style reductions."""
    data = {
        "a": np.arange(6.0).reshape(2, 3),
        "j": scipy.sparse.csc_matrix(np.eye(3)),
        "s": {1, 2},
        "t": (1, "x"),
    }
    loaded = load_pickle(io.BytesIO(pickle.dumps(data, protocol=2)), "test", stand_ins=("scipy.sparse",))
    assert np.array_equal(loaded["a"], data["a"]) and loaded["s"] == {1, 2} and loaded["t"] == (1, "x")
    assert isinstance(loaded["j"], PickledObject) and "csc_matrix" in loaded["j"].pickled_class
    with pytest.raises(UnsafeFileError, match="scipy.sparse"):
        load_pickle(io.BytesIO(pickle.dumps(data, protocol=2)), "test")  # not allowed unless asked for


def test_checkpoint_with_code_is_refused_in_one_line(tmp_path, capsys):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload(marker)}}, checkpoint)
    code = main(
        [
            "predict",
            "--model",
            "facegen.tasks.MoFA",
            "--data",
            "facegen.data.FaceDataModule",
            "--data.init_args.predict_dir",
            str(tmp_path),
            "--ckpt_path",
            str(checkpoint),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and not marker.exists()
    assert (
        err.strip().splitlines()[-1].startswith(f"facegen: error: --ckpt_path {checkpoint}: refusing to load")
    )
