"""facegen's YAML configs read without building what they describe: the ``init_args`` of a section (``model``,
``data``) of several configs merged in order, as the CLI merges ``--config`` files, over the defaults of the
class the section builds; and every ``--config`` of a command line checked to be YAML before it runs."""

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
        config = read_yaml(path)
        merged.update(((config.get(section) or {}).get("init_args")) or {})
    return merged


def read_yaml(path: str | Path) -> dict:
    """The YAML config at ``path`` (an empty file: ``{}``).

    Raises:
        ConfigError: not valid YAML, naming the file, line and column and what the parser found.
    """
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        raise ConfigError(f"{path}: not valid YAML{where}" + (f" ({problem})" if problem else "")) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; give a YAML config") from None
    if not isinstance(config, dict):
        raise ConfigError(
            f"{path}: a YAML config holds settings (key: value), this one a {type(config).__name__}"
        )
    return config


def check_configs(argv: list[str]) -> None:
    """Read every existing ``--config FILE`` (or ``--config=FILE``) of a command line as YAML first, so that a
    syntax error names its file, line and column (a missing file is left to the command's own message)."""
    paths = [b for a, b in zip(argv, argv[1:], strict=False) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for path in paths:
        if Path(path).is_file():
            check_fit_preset(path, read_yaml(path))


def check_fit_preset(path: str | Path, config: dict) -> None:
    """Raise :class:`ConfigError` when the config at ``path`` names a fitting schedule preset
    (``model.init_args.fit: fit/standard.yaml``) that is not a file relative to the config's folder, as it is
    read (a copied config keeps a name that only resolves beside facegen's ``configs/``)."""
    model = config.get("model")
    init = model.get("init_args") if isinstance(model, dict) else None
    preset = init.get("fit") if isinstance(init, dict) else None
    if isinstance(preset, str) and not (Path(path).parent / preset).is_file():
        raise ConfigError(
            f"{path}: model.init_args.fit names {preset}, which is not a file relative to this config; give the "
            "preset's full path (facegen's presets are in configs/fit/) or copy it beside the config"
        )


def settings(paths: list[str], section: str, cls: type) -> dict:
    """:func:`merged_init_args` over the defaults of ``cls``'s constructor (the class the section builds)."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {**defaults, **merged_init_args(paths, section)}
