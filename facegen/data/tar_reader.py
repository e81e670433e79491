"""A lean streaming reader of tar shards (POSIX ustar, GNU long names and pax path records).

Python's ``tarfile`` spends more time parsing headers than PIL spends decoding a 224² JPEG; this reader parses
only what a shard needs (name, size, type), straight from any readable stream, e.g. one that WebDataset's
``gopen`` opened for a URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512


class TarFormatError(ValueError):
    """A truncated or malformed tar stream."""


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            raise TarFormatError(f"tar stream ends {size - len(data)} bytes early")
        data += more
    return data


def _octal(field: bytes) -> int:
    text = field.rstrip(b"\0 ").strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise TarFormatError(f"bad number field {field!r} in a tar header") from None


def iter_tar_files(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file in the tar ``stream``, in order."""
    long_name: str | None = None
    while True:
        header = stream.read(BLOCK)
        if len(header) < BLOCK or header == bytes(BLOCK):
            return  # end of archive (two zero blocks) or end of stream
        size = _octal(header[124:136])
        kind = header[156:157]
        data = _read_exact(stream, size)
        _read_exact(stream, -size % BLOCK)
        if kind in (b"L", b"x"):  # GNU long name / pax extended header for the next member
            long_name = _long_name(kind, data) or long_name
            continue
        if kind not in (b"0", b"\0", b"7"):
            long_name = None
            continue  # directories, links, global headers
        name = long_name
        if name is None:
            name = header[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            if header[257:262] == b"ustar" and prefix:
                name = f"{prefix}/{name}"
        long_name = None
        yield name, data


def _long_name(kind: bytes, data: bytes) -> str | None:
    if kind == b"L":
        return data.split(b"\0", 1)[0].decode("utf-8", "replace")
    for record in data.decode("utf-8", "replace").split("\n"):
        _, _, field = record.partition(" ")
        if field.startswith("path="):
            return field[len("path=") :]
    return None


def group_samples(files: Iterator[tuple[str, bytes]]) -> Iterator[dict]:
    """WebDataset samples: consecutive files sharing a key (path up to the first dot of the base name),
    as {"__key__": key, extension: bytes, ...}."""
    current: dict | None = None
    for name, data in files:
        folder, _, base = name.rpartition("/")
        stem, dot, extension = base.partition(".")
        if not dot:
            continue
        key = f"{folder}/{stem}" if folder else stem
        if current is None or current["__key__"] != key:
            if current is not None:
                yield current
            current = {"__key__": key}
        current[extension] = data
    if current is not None:
        yield current
