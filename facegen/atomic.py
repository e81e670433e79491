"""Atomic, link-safe file writes: every file facegen writes goes through :func:`atomic_file`.

The content goes to a fresh temporary beside the target, created by :func:`tempfile.mkstemp` (an unpredictable
name opened with ``O_CREAT | O_EXCL | O_NOFOLLOW``, so a file or link planted in the output folder cannot
redirect the write), and is renamed over the target; the rename replaces a link at the final name instead of
writing through it. An interrupted write leaves no half-written file under the final name and removes its
temporary. ``durable=True`` also flushes the data to disk before the rename (shards, manifests, checkpoints,
model files: what a crash must not lose).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process's umask, read once at import (reading it means setting it, which is not thread-safe).
UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A new, empty temporary file beside ``path`` (its name ends in ``suffix``, for writers that choose the
    format by extension), renamed over ``path`` when the block ends without an error and removed when it
    raises. For writers that open files by name (OpenCV's video writer); others use :func:`atomic_file`."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~UMASK)  # mkstemp creates 0600; results are as readable as any other file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike, durable: bool = False) -> Iterator[BinaryIO]:
    """A binary handle whose content becomes ``path`` when the block ends without an error (see the module
    docstring); ``durable``: ``fsync`` the data before the rename."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~UMASK)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = False) -> Path:
    with atomic_file(path, durable) as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, durable: bool = False) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), durable)
