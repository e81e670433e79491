"""Settings read from facegen's YAML configs without building what they describe: the ``init_args`` of a
section (``model``, ``data``) of several configs merged in order, as the CLI merges ``--config`` files, over the
defaults of the class the section builds."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

from facegen.errors import ConfigError


def merged_init_args(paths: list[str], section: str) -> dict:
    """``<section>.init_args`` of the configs ``paths``, later files winning key by key.

    Raises:
        ConfigError: a config is missing or not valid YAML (file, line and column named).
    """
    merged: dict = {}
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"--config {path} does not exist")
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}: not valid YAML{where}") from None
        merged.update(((config.get(section) or {}).get("init_args")) or {})
    return merged


def settings(paths: list[str], section: str, cls: type) -> dict:
    """:func:`merged_init_args` over the defaults of ``cls``'s constructor (the class the section builds)."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {**defaults, **merged_init_args(paths, section)}
