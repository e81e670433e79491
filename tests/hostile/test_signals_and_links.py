"""Round two of the hostile-input trial: links planted at the names facegen writes, stop signals, photo names too
long for a tar header, landmark files that put the face outside its photo, and GAN files whose tensors do not
fit their network or pose as huge ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Callback
from PIL import Image

from facegen.atomic import write_text_atomic
from facegen.cli import main
from facegen.data.landmarks import write_pts
from facegen.data.sample import encode_image, encode_sample
from facegen.data.shards import ShardWriter
from facegen.nets.stylegan import Generator
from tests.conftest import ROOT
from tests.data_helpers import face_photo, template_landmarks
from tests.gan_files import randomised, rosinality_state
from tests.test_mofa import tiny_config
from tests.test_predict import predict_config as base_predict_config


class SignalAt(Callback):
    """Sends ``signum`` to this process at the end of predict batch / training step ``index``."""

    def __init__(self, index: int, signum: int = int(signal.SIGTERM)) -> None:
        self.index, self.signum = index, signum

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == self.index:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.index:
            os.kill(os.getpid(), self.signum)


def test_atomic_writes_replace_planted_links_and_never_write_through_them(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("summary.json", ".summary.json.part"):
        (out / name).symlink_to(secret)
    write_text_atomic(out / "summary.json", "{}")
    assert secret.read_text() == "keep me"
    assert not (out / "summary.json").is_symlink() and (out / "summary.json").read_text() == "{}"
    assert (out / ".summary.json.part").is_symlink()  # the planted name is never used
    assert (out / "summary.json").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_shard_interrupted_while_written_leaves_nothing_behind(tmp_path):
    sample = encode_sample("a", encode_image(np.zeros((8, 8, 3), np.uint8), "png"), np.zeros((68, 2)), {})
    with pytest.raises(RuntimeError), ShardWriter(tmp_path / "shard-000000.tar") as writer:
        writer.write(sample)
        raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """6 synthetic photos with .pts files (names sort in prediction order)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        landmarks = template_landmarks(0.5, (60, 60))
        Image.fromarray(face_photo((120, 120), landmarks, seed=i)).save(folder / f"face{i}.png")
        write_pts(folder / f"face{i}.pts", landmarks)
    return folder


def predict_config(folder: Path, photos: Path, callbacks: list[dict]) -> Path:
    """The predict tests' config (:func:`tests.test_predict.predict_config`) without a fit, in batches of two,
    with ``callbacks``."""
    path = base_predict_config(folder, photos, 0)
    spec = yaml.safe_load(path.read_text())
    spec["trainer"]["callbacks"] = callbacks
    spec["model"]["init_args"]["fit"] = None
    spec["data"]["init_args"]["batch_size"] = 2
    path.write_text(yaml.safe_dump(spec))
    return path


def test_predict_stops_on_sigterm_with_what_it_wrote_intact_and_the_rerun_finishes(
    tmp_path, photo_folder, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me")
    (out / ".summary.json.part").symlink_to(secret)  # the old temporary name, planted
    stop = [{"class_path": f"{__name__}.SignalAt", "init_args": {"index": 1}}]
    arguments = ["--out", str(out), "--texture_size", "16", "--outputs", "[code, mesh]"]
    assert main(["predict", "--config", str(predict_config(tmp_path, photo_folder, stop)), *arguments]) == 143
    message = capsys.readouterr().err.strip().splitlines()[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped"] == "Stopped (SIGTERM)"
    assert 0 < len(summary["written"]) < 6
    assert message == (
        f"facegen: stopped by SIGTERM: {len(summary['written'])} faces written to {out} (summary.json lists "
        "them); the same command writes the rest"
    )
    for name in summary["written"]:
        assert json.loads((out / name / "code.json").read_text())["key"] == name
    assert not [p for p in out.rglob(".*.part*") if not p.is_symlink()]
    assert secret.read_text() == "keep me"
    assert main(["predict", "--config", str(predict_config(tmp_path, photo_folder, [])), *arguments]) == 0
    rerun = json.loads((out / "summary.json").read_text())
    assert rerun["stopped"] is None and sorted(rerun["already_there"]) == sorted(summary["written"])
    assert len(rerun["written"]) + len(rerun["already_there"]) == 6


def test_a_fit_stopped_by_sigterm_saves_last_ckpt_exits_143_and_resumes(tmp_path, tiny_shards, capsys):
    path = tiny_config(tmp_path, tiny_shards, max_steps=5, val_check_interval=100)
    spec = yaml.safe_load(path.read_text())
    spec["trainer"]["callbacks"].append({"class_path": f"{__name__}.SignalAt", "init_args": {"index": 2}})
    stopped = path.with_name("stopped.yaml")
    stopped.write_text(yaml.safe_dump(spec))
    assert main(["fit", "--config", str(stopped)]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "facegen: stopped by SIGTERM: last.ckpt saved; resume with the same command and --ckpt_path last"
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2
    assert main(["fit", "--config", str(path), "--ckpt_path", "last"]) == 0
    newest = max(last.parent.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)  # Lightning's last-v1.ckpt
    assert torch.load(newest, weights_only=False)["global_step"] == 5


def test_a_second_signal_ends_the_process_at_once():
    script = (
        "import os, signal, time\n"
        "from facegen.signals import Stopped, stopping_on_signals\n"
        "with stopping_on_signals():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    except Stopped:\n"
        "        print('first', flush=True)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout == "first\n" and result.returncode == 128 + signal.SIGTERM
    assert time.perf_counter() - started < 20


def test_prepare_shortens_photo_names_too_long_for_a_tar_header(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    landmarks = template_landmarks(0.8, (200, 180))
    for stem in ("x" * 150, "x" * 149 + "y", "short"):
        Image.fromarray(face_photo((400, 420), landmarks)).save(folder / f"{stem}.png")
        write_pts(folder / f"{stem}.pts", landmarks)
    out = tmp_path / "shards"
    assert main(["prepare", "--input", str(folder), "--out", str(out), "--progress", "false"]) == 0
    keys = [s["key"] for s in json.loads((out / "manifest.json").read_text())["samples"]]
    assert len(set(keys)) == 3 and "short_f0" in keys and max(map(len, keys)) < 70


def test_landmarks_that_put_the_face_outside_the_photo_are_rejected_with_the_reason(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    landmarks = template_landmarks(0.8, (200, 180))
    Image.fromarray(face_photo((400, 420), landmarks)).save(folder / "good.png")
    write_pts(folder / "good.pts", landmarks)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    write_pts(folder / "dot.pts", landmarks)  # full-size points on a 1x1 photo
    Image.fromarray(face_photo((400, 420), landmarks)).save(folder / "shifted.png")
    write_pts(folder / "shifted.pts", landmarks + 5000)
    out = tmp_path / "shards"
    assert main(["prepare", "--input", str(folder), "--out", str(out), "--progress", "false"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["source"] for s in manifest["samples"]] == ["good.png"]
    reasons = {r["source"]: (r["reason"], r["detail"]) for r in manifest["rejects"]}
    assert reasons["dot.png"][0] == reasons["shifted.png"][0] == "face_outside_photo"
    assert "outside the 1x1 photo" in reasons["dot.png"][1]


@pytest.fixture(scope="module")
def generator():
    return randomised(Generator(16, 3, 16, 16, 2, conv_clamp=2.0, channel_base=256, channel_max=32), 0)


@pytest.mark.parametrize("damage", ["noise.weight", "to_rgb1.conv.weight", "huge_view"])
def test_gan_import_refuses_tensors_that_do_not_fit_in_one_line_before_allocating(
    tmp_path, generator, damage, capsys
):
    state = rosinality_state(generator)
    if damage == "huge_view":  # one stored float posing as a 1e6 x 1e6 style layer: terabytes if built
        state["style.1.weight"] = torch.zeros(1).expand(1_000_000, 1_000_000)
        expected = "claims more elements than its storage holds"
    else:  # a tensor of the wrong shape, met while mapping the names (a traceback before)
        key = "conv1.noise.weight" if damage == "noise.weight" else damage
        state[key] = state[key][..., :-1].clone() if state[key].shape[-1] > 1 else state[key][:0].clone()
        expected = "its tensors do not fit a StyleGAN2"
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": state}, path)
    assert path.stat().st_size < 10_000_000
    assert main(["gan", "import", "--source", str(path), "--out", str(tmp_path / "gan.pt")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("facegen: error:") and "\n" not in error and expected in error, error
    assert not (tmp_path / "gan.pt").exists()


def test_prepare_stops_on_sigterm_keeping_finished_shards_and_the_rerun_finishes(
    tmp_path, monkeypatch, capsys
):
    from facegen.data import prepare

    folder = tmp_path / "photos"
    folder.mkdir()
    landmarks = template_landmarks(0.8, (200, 180))
    for i in range(6):
        Image.fromarray(face_photo((400, 420), landmarks, seed=i)).save(folder / f"face{i}.png")
        write_pts(folder / f"face{i}.pts", landmarks)
    real, seen = prepare.process_photo, []

    def signalled(*args, **kwargs):  # SIGTERM while the third photo (the second shard) is being prepared
        seen.append(1)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare, "process_photo", signalled)
    out = tmp_path / "shards"
    command = [
        "prepare",
        "--input",
        str(folder),
        "--out",
        str(out),
        "--photos-per-shard",
        "2",
        "--progress",
        "false",
    ]
    assert main(command) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("facegen: stopped by SIGTERM:")
    assert sorted(p.name for p in out.iterdir()) == ["shard-000000.json", "shard-000000.tar"]  # no partial
    monkeypatch.setattr(prepare, "process_photo", real)
    assert main(command) == 0
    assert json.loads((out / "manifest.json").read_text())["faces"] == 6
