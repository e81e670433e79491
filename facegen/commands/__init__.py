"""facegen's own subcommands beside LightningCLI's fit/validate/test/predict.

Each command module exposes ``HELP`` (one line) and ``run(argv) -> int``; register it in ``EXTRA_COMMANDS``.
Modules are imported only when their command runs, so ``facegen fit`` pays nothing for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ExtraCommand:
    """A lazily imported subcommand: ``module`` holds ``run(argv: list[str]) -> int``."""

    module: str
    help: str

    def run(self, argv: Sequence[str]) -> int:
        return importlib.import_module(self.module).run(list(argv))


EXTRA_COMMANDS: dict[str, ExtraCommand] = {
    "evaluate": ExtraCommand(
        "facegen.commands.evaluate",
        "score a trained model on a benchmark (AFLW2000-3D, NoW, synthetic)",
    ),
    "fetch": ExtraCommand(
        "facegen.commands.fetch", "fetch and check the models a config needs (face model, landmark models)"
    ),
    "gan": ExtraCommand("facegen.commands.gan", "import and describe pretrained StyleGAN2 networks"),
    "model": ExtraCommand("facegen.commands.model", "convert, inspect and download face models"),
    "prepare": ExtraCommand("facegen.commands.prepare", "photos -> aligned, landmarked face crops in shards"),
    "synth": ExtraCommand("facegen.commands.synth", "render random faces of a face model into shards"),
}
