"""Resume the way users type it: a run killed mid-way, restarted in the same folder with ``--ckpt_path last``,
continues from its last checkpoint and reproduces the uninterrupted run exactly."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from facegen.cli import main
from tests.test_mofa import tiny_config

CHECKPOINT = {
    "class_path": "facegen.callbacks.ModelCheckpoint",
    "init_args": {"every_n_train_steps": 3, "save_last": True},
}


class Killed(Exception):
    """Stands for the process being killed: nothing after it runs, what is on disk stays."""


class KillAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise Killed(f"killed at step {self.step}")


def losses(folder, version: int) -> dict[int, float]:
    path = folder / "runs" / "mofa" / f"version_{version}" / "metrics.csv"
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(path.open()))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def test_killed_run_resumes_with_last_in_the_same_folder_exactly(tmp_path, tiny_shards):
    def config(folder, kill_at: int | None = None):
        path = tiny_config(folder, tiny_shards, max_steps=6)
        spec = yaml.safe_load(path.read_text())
        spec["trainer"]["callbacks"] = [CHECKPOINT]
        if kill_at is not None:
            kill = {"class_path": f"{__name__}.KillAtStep", "init_args": {"step": kill_at}}
            spec["trainer"]["callbacks"].append(kill)
            path = path.with_name("killed.yaml")
        path.write_text(yaml.safe_dump(spec))
        return path

    main(["fit", "--config", str(config(tmp_path / "full"))])
    with pytest.raises(Killed):
        main(["fit", "--config", str(config(tmp_path / "interrupted", kill_at=4))])
    main(["fit", "--config", str(config(tmp_path / "interrupted")), "--ckpt_path", "last"])
    full = losses(tmp_path / "full", 0)
    resumed = losses(tmp_path / "interrupted", 1)  # the restarted run logs into the next version
    # the newest state on disk is the last.ckpt of the validation at step 4 (the step-3 checkpoint is older)
    assert sorted(resumed) == [4, 5] and resumed == {step: full[step] for step in (4, 5)}


def test_a_finished_run_resumed_with_last_ends_without_training(tmp_path, tiny_shards):
    """What the Makefile's quickstarts rely on: ``--ckpt_path last`` resumes an interrupted dependency and
    returns at once for a finished one."""
    path = tiny_config(tmp_path, tiny_shards, max_steps=3)
    spec = yaml.safe_load(path.read_text())
    spec["trainer"]["callbacks"] = [CHECKPOINT]
    path.write_text(yaml.safe_dump(spec))
    main(["fit", "--config", str(path)])
    (last,) = (tmp_path / "runs").rglob("last.ckpt")
    state = torch.load(last, map_location="cpu", weights_only=True)
    main(["fit", "--config", str(path), "--ckpt_path", "last"])
    assert state["global_step"] == 3 and losses(tmp_path, 0) and not losses(tmp_path, 1)


def test_last_without_any_checkpoint_is_a_one_line_error(tmp_path, tiny_shards, capsys):
    path = tiny_config(tmp_path, tiny_shards, max_steps=2)
    assert main(["fit", "--config", str(path), "--ckpt_path", "last"]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert err.startswith("facegen: error: --ckpt_path last: no last.ckpt under") and str(tmp_path) in err


def test_last_checkpoint_is_the_final_state_when_the_monitored_metric_stops_improving(tmp_path):
    """Lightning writes last.ckpt only beside a new best checkpoint; facegen's ModelCheckpoint writes it after
    every validation and at the end, so a run whose metric got worse still ends with its final state."""
    import lightning as L
    import torch

    from facegen.callbacks import ModelCheckpoint

    class Worsening(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_index):
            return self.layer(batch).square().mean()

        def validation_step(self, batch, batch_index):
            self.log("val/score", float(self.global_step))  # worse at every validation

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=4)
    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min", save_last=True)
    trainer = L.Trainer(
        max_steps=7,
        val_check_interval=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
    )
    trainer.fit(Worsening(), data, data)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 7
    (best,) = tmp_path.glob("epoch=*.ckpt")
    assert torch.load(best, weights_only=True)["global_step"] == 3  # the best stays the best
