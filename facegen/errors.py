"""User-facing errors: what a user typed or gave (a setting, a file) is wrong, and the message says which and how to
fix it. The ``facegen`` command prints them as one line (``facegen: error: ...``, exit code 2) instead of a
traceback; ``--debug`` or ``FACEGEN_DEBUG=1`` shows the traceback.

Every class here also derives from the builtin type that callers already catch (``ValueError``, ``OSError``), so
code written against those keeps working.
"""

from __future__ import annotations

from typing import get_args


class FacegenError(Exception):
    """Base of facegen's user-facing errors; the message names the setting or file and the fix."""


class ConfigError(FacegenError, ValueError):
    """A setting has a value facegen cannot use (wrong range, contradicting another setting)."""


class BadFileError(FacegenError, ValueError):
    """A file exists but cannot be used: truncated, corrupt, of another format, or holding no usable data."""


class UnsafeFileError(BadFileError):
    """A file asks to run code or to build objects facegen never builds from data (e.g. a pickle of a
    non-allow-listed class)."""


def check_choice(setting: str, value: object, choices: object) -> None:
    """Raise :class:`ConfigError` naming ``setting`` unless ``value`` is one of the ``Literal`` type ``choices``
    (the one list of allowed values, which ``--help`` also shows)."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(f"{setting} must be one of {', '.join(map(str, allowed))}; got {value!r}")
