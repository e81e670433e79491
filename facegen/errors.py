"""User-facing errors: what a user typed or gave (a setting, a file) is wrong, and the message says which and how to
fix it. The ``facegen`` command prints them as one line (``facegen: error: ...``, exit code 2) instead of a
traceback; ``--debug`` or ``FACEGEN_DEBUG=1`` shows the traceback.

Every class here also derives from the builtin type that callers already catch (``ValueError``, ``OSError``), so
code written against those keeps working.
"""

from __future__ import annotations


class FacegenError(Exception):
    """Base of facegen's user-facing errors; the message names the setting or file and the fix."""


class ConfigError(FacegenError, ValueError):
    """A setting has a value facegen cannot use (wrong range, contradicting another setting)."""


class BadFileError(FacegenError, ValueError):
    """A file exists but cannot be used: truncated, corrupt, of another format, or holding no usable data."""


class UnsafeFileError(BadFileError):
    """A file asks to run code or to build objects facegen never builds from data (e.g. a pickle of a
    non-allow-listed class)."""
