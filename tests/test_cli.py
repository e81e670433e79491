"""The `facegen` entry point: help on every level, version, bad configs, a real fit, W&B offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facegen import __version__
from facegen.cli import main

TRAINER_SUBCOMMANDS = ["fit", "validate", "test", "predict"]


def run_exit(args: list[str]) -> int:
    """The exit code of ``facegen args``: help and printed configs exit, user errors return 2."""
    try:
        return main(args)
    except SystemExit as done:
        return done.code


def test_top_level_help_lists_every_subcommand(capsys):
    assert run_exit(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*TRAINER_SUBCOMMANDS, "facegen model"]:
        assert name in out


@pytest.mark.parametrize("subcommand", TRAINER_SUBCOMMANDS)
def test_trainer_subcommand_help(subcommand, capsys):
    assert run_exit([subcommand, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--trainer.max_steps" in out and "--model" in out and "--data" in out


@pytest.mark.parametrize(
    "args",
    [
        ["model", "--help"],
        ["model", "convert", "--help"],
        ["model", "info", "--help"],
        ["model", "download", "--help"],
    ],
)
def test_tool_help(args, capsys):
    assert run_exit(args) == 0
    assert "usage:" in capsys.readouterr().out


def test_version(capsys):
    assert run_exit(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "facegen"), "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and __version__ in result.stdout


def _toy_config(tmp_path: Path, data_path: Path, **trainer) -> Path:
    config = {
        "model": {"class_path": "tests.toy.ToyRegression", "init_args": {"lr": 0.05}},
        "data": {"class_path": "tests.toy.ToyData", "init_args": {"path": str(data_path)}},
        "trainer": {
            "max_steps": 3,
            "log_every_n_steps": 1,
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "accelerator": "cpu",
            **trainer,
        },
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_runs_twice_in_the_same_folder(in_tmp, tiny_tensors):
    config = _toy_config(
        in_tmp,
        tiny_tensors,
        logger={
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(in_tmp), "name": "toy", "version": 0},
        },
    )
    for _ in range(2):  # the second run must not abort on the config saved by the first
        assert main(["fit", "--config", str(config)]) == 0
    saved = in_tmp / "toy" / "version_0" / "config.yaml"
    assert saved.is_file() and "ToyRegression" in saved.read_text()
    metrics = (in_tmp / "toy" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics
    assert list((in_tmp / "toy" / "version_0" / "checkpoints").glob("*.ckpt"))


def test_print_config_shows_class_paths(in_tmp, tiny_tensors, capsys):
    config = _toy_config(in_tmp, tiny_tensors)
    assert run_exit(["fit", "--config", str(config), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "tests.toy.ToyRegression"
    assert printed["trainer"]["max_steps"] == 3


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("facegen: error: "), err
    return err


def test_missing_config_file_is_a_clear_error(in_tmp, capsys):
    assert run_exit(["fit", "--config", "does_not_exist.yaml"]) == 2
    assert "does_not_exist.yaml" in one_error_line(capsys)


def test_unknown_key_is_a_clear_error(in_tmp, tiny_tensors, capsys):
    config = _toy_config(in_tmp, tiny_tensors)
    assert run_exit(["fit", "--config", str(config), "--trainer.no_such_option", "1"]) == 2
    assert "no_such_option" in one_error_line(capsys)


def test_wrong_type_is_a_clear_error(in_tmp, tiny_tensors, capsys):
    config = _toy_config(in_tmp, tiny_tensors)
    assert run_exit(["fit", "--config", str(config), "--model.init_args.lr", "fast"]) == 2
    assert "model.lr: Expected a <class 'float'>. Got value: fast" in one_error_line(capsys)


@pytest.mark.parametrize("preset", ["cpu", "gpu", "ddp", "slurm"])
def test_trainer_presets_parse(preset, in_tmp, tiny_tensors, capsys):
    root = Path(__file__).resolve().parents[1]
    config = _toy_config(in_tmp, tiny_tensors)
    args = ["fit", "--config", str(config), "--config", str(root / "configs" / "trainer" / f"{preset}.yaml")]
    assert run_exit([*args, "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["accelerator"] in ("cpu", "gpu")


def test_wandb_logger_goes_offline_without_login(in_tmp, tiny_tensors, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(in_tmp / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = Path(__file__).resolve().parents[1]
    config = _toy_config(in_tmp, tiny_tensors, logger=None)
    with caplog.at_level("INFO"):
        assert (
            main(
                ["fit", "--config", str(config), "--config", str(root / "configs" / "logger" / "wandb.yaml")]
            )
            == 0
        )
    assert "logging offline" in caplog.text
    runs = list((in_tmp / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert (in_tmp / "runs" / "config.yaml").is_file() and not (in_tmp / "config.yaml").exists()


def test_model_help_takes_short_class_names_and_lists_the_choices(capsys):
    assert run_exit(["fit", "--model.help", "MoFA"]) == 0
    out = capsys.readouterr().out
    assert "--model.photometric {points,raster}" in out and "--model.lr_schedule {constant,cosine}" in out
