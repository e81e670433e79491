"""The ``facegen`` command.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI subcommands in subclass mode: the model and
datamodule are chosen in YAML by ``class_path``/``init_args``. facegen's own tools (``model``, ``prepare``,
``synth``) are plain jsonargparse commands registered in :mod:`facegen.commands`.

User errors (:mod:`facegen.errors`, missing or unwritable files, Lightning configuration errors) are printed as
one line, ``facegen: error: ...``, with exit code 2; ``--debug`` (anywhere on the command line) or
``FACEGEN_DEBUG=1`` shows the traceback instead. SIGTERM or Ctrl-C stops any command with one line saying what
was done and exit code 128 + signal (:mod:`facegen.signals`); ``fit`` first saves a resumable ``last.ckpt``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import pickle
import re
import signal
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentError, DefaultHelpFormatter
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from facegen import __version__
from facegen.callbacks.checkpoint import CheckpointOnStop
from facegen.commands import EXTRA_COMMANDS
from facegen.commands.config_files import check_configs
from facegen.errors import BadFileError, ConfigError, FacegenError
from facegen.export.outputs import DEFAULT_OUTPUTS, OUTPUTS, Output
from facegen.signals import Stopped, stopping_on_signals

#: Set to 1 to see tracebacks of user errors (as ``--debug`` does).
DEBUG_ENV = "FACEGEN_DEBUG"
#: Errors that mean the user gave something wrong: printed as one line unless debugging.
USER_ERRORS = (
    FacegenError,
    ArgumentError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
    MisconfigurationException,
)
#: ``ckpt_path`` values that Lightning resolves itself.
_SPECIAL_CHECKPOINTS = ("best", "hpc", "registry")


def _extra_commands_epilog() -> str:
    lines = ["facegen tools (each has --help):"]
    lines += [f"  facegen {name:<10} {command.help}" for name, command in EXTRA_COMMANDS.items()]
    lines += ["", f"Errors are one line; --debug (or {DEBUG_ENV}=1) shows their traceback."]
    return "\n".join(lines)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keeps the epilog's line breaks so the tool list stays one command per line."""


class FacegenCLI(LightningCLI):
    """LightningCLI with facegen's defaults: subclass mode and a config save that never aborts a rerun."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        # imported so that jsonargparse knows facegen's classes by their short names (--model.help MoFA)
        import facegen.data  # noqa: F401
        import facegen.tasks  # noqa: F401

        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "prog": "facegen",
                "description": "facegen: learn 3D faces and UV face textures from unlabeled photographs.",
                "epilog": _extra_commands_epilog(),
                "version": __version__,
                "formatter_class": _HelpFormatter,
                "exit_on_error": False,
            },
            args=list(args) if args is not None else None,
            run=run,
        )

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        """``predict`` also takes ``--out DIR`` (the model's ``prediction_writer`` writes every prediction there),
        ``--overwrite``, ``--texture_size`` and ``--outputs``, and keeps no predictions in memory unless asked
        (``--return_predictions true``)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument(
                "--out",
                type=str | None,
                default=None,
                help="write meshes, textures, coefficients and pictures of every prediction here",
            )
            parser.add_argument(
                "--overwrite",
                type=bool,
                default=False,
                help="rewrite faces already complete in --out (default: skip them)",
            )
            parser.add_argument("--texture_size", type=int, default=512, help="UV texture side in texels")
            parser.add_argument(
                "--outputs",
                type=list[Output] | None,
                default=None,
                help=f"what to write per face, of {', '.join(OUTPUTS)} (default: {', '.join(DEFAULT_OUTPUTS)})",
            )
            parser.set_defaults(return_predictions=False)
        return parser

    def instantiate_trainer(self, **kwargs):
        """The Trainer; Lightning reports bad trainer settings (e.g. ``devices: -3``) as TypeError/ValueError."""
        try:
            return super().instantiate_trainer(**kwargs)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"trainer: {error}") from error

    def _parse_ckpt_path(self) -> None:
        """Check ``ckpt_path`` before anything is built: ``last`` becomes the newest ``last.ckpt`` of this run's
        folders (Lightning would look only in the new logger version and train from step 0); a missing,
        truncated or unsafe checkpoint is a one-line error."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or path in _SPECIAL_CHECKPOINTS or "://" in str(path):
            return super()._parse_ckpt_path()
        if path == "last":
            path = find_last_checkpoint(self.config[subcommand].trainer)
            self.config[f"{subcommand}.ckpt_path"] = str(path)
            rank_zero_info(f"facegen: --ckpt_path last: resuming from {path}")
        check_checkpoint(Path(path))
        try:
            super()._parse_ckpt_path()
        except pickle.UnpicklingError as error:
            first = str(error).strip().splitlines()[0]
            raise BadFileError(
                f"--ckpt_path {path}: refusing to load it: it holds objects other than tensors and plain data "
                f"({first})"
            ) from None
        except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
            raise BadFileError(f"--ckpt_path {path}: not a readable checkpoint ({error})") from None

    def before_instantiate_classes(self) -> None:
        """``predict``: ``--out`` checked (a folder that can be written) before any model is built; no logger (a
        training config's logger would open a new, empty log version per prediction run), and the run's
        ``config.yaml`` saved in ``--out`` beside the predictions it made."""
        if self.config.get("subcommand") != "predict":
            return
        config = self.config["predict"]
        if config.texture_size < 1:
            raise ConfigError(f"--texture_size must be at least 1 texel, got {config.texture_size}")
        config.trainer.logger = False
        if config.get("out"):
            check_output_folder(Path(config.out))
            config.trainer.default_root_dir = config.out

    def before_fit(self) -> None:
        self.trainer.callbacks.append(CheckpointOnStop())

    def before_predict(self) -> None:
        config = self.config["predict"]
        if config.get("out"):
            writer = getattr(self.model, "prediction_writer", None)
            if writer is None:
                raise ConfigError(f"--out: {type(self.model).__name__} has no prediction writer")
            options = {}
            if config.outputs is not None:
                if "outputs" not in inspect.signature(writer).parameters:
                    raise ConfigError(
                        f"--outputs: {type(self.model).__name__} has no choice of outputs; drop it"
                    )
                options["outputs"] = config.outputs
            self.trainer.callbacks.append(
                writer(config.out, config.overwrite, config.texture_size, **options)
            )


def check_output_folder(out: Path) -> None:
    """Create ``out`` if needed; raise :class:`ConfigError` when it is a file or cannot be written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: give a folder to write into")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--out {out}: cannot create the folder ({error.strerror or error})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: the folder is not writable; give another --out")


def check_checkpoint(path: Path) -> None:
    """Raise a one-line error when ``path`` is not a file or not a complete checkpoint archive."""
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {path} does not exist; give a checkpoint file (or 'last' to resume)")
    if not zipfile.is_zipfile(path):
        raise BadFileError(
            f"--ckpt_path {path}: truncated or not a PyTorch checkpoint (no complete zip archive)"
        )


def _checkpoint_roots(trainer) -> list[Path]:
    """Folders that hold this run's checkpoints, most specific first: ModelCheckpoint ``dirpath``s, then each
    logger's ``save_dir/name`` (``save_dir/project`` for W&B), else ``default_root_dir``."""
    roots = []
    for callback in trainer.get("callbacks") or []:
        dirpath = (callback.get("init_args") or {}).get("dirpath") if hasattr(callback, "get") else None
        if dirpath:
            roots.append(Path(dirpath))
    loggers = trainer.get("logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    for logger in loggers:
        arguments = (logger.get("init_args") or {}) if hasattr(logger, "get") else {}
        if arguments.get("save_dir"):
            name = arguments.get("name") or arguments.get("project") or ""
            roots.append(Path(arguments["save_dir"], name))
    default = Path(trainer.get("default_root_dir") or ".")
    return roots or [default / "lightning_logs", default]


def find_last_checkpoint(trainer) -> Path:
    """The newest ``last.ckpt`` (or ``last-v<N>.ckpt``) under this run's checkpoint folders (see
    :func:`_checkpoint_roots`), searching all logger versions."""
    roots = _checkpoint_roots(trainer)
    for root in roots:
        found = [
            p for pattern in ("last.ckpt", "last-v*.ckpt") for p in root.glob(f"**/{pattern}") if p.is_file()
        ]
        if found:
            return max(found, key=lambda p: (p.stat().st_mtime, str(p)))
    searched = ", ".join(str(r) for r in roots)
    raise ConfigError(
        f"--ckpt_path last: no last.ckpt under {searched}; train first (ModelCheckpoint with save_last: true) or "
        "give a checkpoint file"
    )


#: The lines of a jsonargparse report that say what is wrong (the rest lists the union types it tried).
_PARSE_DETAIL = re.compile(r"Expected a|is not accepted|not a valid|unrecognized|does not exist|required")


def _parse_error(message: str) -> str:
    """jsonargparse's report of a bad setting as one line: the setting's dotted key, then what is wrong."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    details = [
        line.strip(" -")
        for line in message.splitlines()
        if _PARSE_DETAIL.search(line) and "NoneType" not in line
    ]
    detail = details[0] if details else message.strip().splitlines()[0]
    return f"{'.'.join(keys)}: {detail}" if keys else detail


def _one_line(error: BaseException) -> str:
    """The error's message on one line; for an error re-raised from a DataLoader worker, the worker's own."""
    if isinstance(error, ArgumentError):
        return _parse_error(str(error)) + " (--help lists the settings and their types)"
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(text.split()) or type(error).__name__


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``facegen`` console script; ``args`` excludes the program name."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if args is None:
        sys.argv[1:] = argv  # LightningCLI reads sys.argv itself
    try:
        with stopping_on_signals("fit" if argv[:1] == ["fit"] else "raise"):
            check_configs(argv)
            if argv and argv[0] in EXTRA_COMMANDS:
                return EXTRA_COMMANDS[argv[0]].run(argv[1:])
            FacegenCLI(args=None if args is None else argv)
    except Stopped as stop:
        print(f"facegen: stopped by {stop.name}: {stop.done}", file=sys.stderr)
        return stop.exit_code
    except SIGTERMException:  # Lightning stopped the training after SIGTERM
        print(f"facegen: stopped by SIGTERM: {CheckpointOnStop.DONE}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as error:
        cause = user_error(error)
        if cause is None or debug:
            raise
        print(f"facegen: error: {_one_line(cause)}", file=sys.stderr)
        return 2
    return 0


def user_error(error: BaseException) -> BaseException | None:
    """``error`` or the first exception it was explicitly raised from (``raise ... from``: jsonargparse wraps
    errors raised while it builds the model and data) that is a user error, else None. An error merely raised
    while handling a user error is a bug and keeps its traceback."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, USER_ERRORS):
            return error
        seen.add(id(error))
        error = error.__cause__
    return None


if __name__ == "__main__":
    sys.exit(main())
