"""The ``facegen`` command.

``fit``, ``validate``, ``test`` and ``predict`` are LightningCLI subcommands in subclass mode: the model and
datamodule are chosen in YAML by ``class_path``/``init_args``. facegen's own tools (``model``, and later
``prepare`` and ``synth``) are plain jsonargparse commands registered in :mod:`facegen.commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from facegen import __version__
from facegen.commands import EXTRA_COMMANDS


def _extra_commands_epilog() -> str:
    lines = ["facegen tools (each has --help):"]
    lines += [f"  facegen {name:<10} {command.help}" for name, command in EXTRA_COMMANDS.items()]
    return "\n".join(lines)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keeps the epilog's line breaks so the tool list stays one command per line."""


class FacegenCLI(LightningCLI):
    """LightningCLI with facegen's defaults: subclass mode and a config save that never aborts a rerun."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
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
            },
            args=list(args) if args is not None else None,
            run=run,
        )

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        """``predict`` also takes ``--out DIR`` (the model's ``prediction_writer`` writes every prediction there),
        ``--overwrite`` and ``--texture_size``, and keeps no predictions in memory unless asked
        (``--return_predictions true``)."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument("--out", type=str | None, default=None,
                                help="write meshes, textures, coefficients and pictures of every prediction here")  # fmt: skip
            parser.add_argument("--overwrite", type=bool, default=False,
                                help="rewrite faces already complete in --out (default: skip them)")  # fmt: skip
            parser.add_argument("--texture_size", type=int, default=512, help="UV texture side in texels")
            parser.set_defaults(return_predictions=False)
        return parser

    def before_predict(self) -> None:
        config = self.config["predict"]
        if config.get("out"):
            writer = getattr(self.model, "prediction_writer", None)
            if writer is None:
                raise ValueError(f"--out: {type(self.model).__name__} has no prediction writer")
            self.trainer.callbacks.append(writer(config.out, config.overwrite, config.texture_size))


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``facegen`` console script; ``args`` excludes the program name."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in EXTRA_COMMANDS:
        return EXTRA_COMMANDS[argv[0]].run(argv[1:])
    FacegenCLI(args=None if args is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
