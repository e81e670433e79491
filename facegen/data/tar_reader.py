"""A lean streaming reader of tar shards (POSIX ustar, GNU long names and pax path records).

Python's ``tarfile`` spends more time parsing headers than PIL spends decoding a 224² JPEG; this reader parses
only what a shard needs (name, size, type), straight from any readable stream, e.g. one that WebDataset's
``gopen`` opened for a URL.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO

from facegen.errors import BadFileError

BLOCK = 512
CHUNK = 1 << 24  # bytes read at once


class TarFormatError(BadFileError):
    """A truncated, empty or malformed tar stream, or a file that is not a tar archive."""


def _read_upto(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream (pipes may return short reads). Read in chunks,
    so a header that claims a huge size costs only what the stream really holds."""
    data = stream.read(min(size, CHUNK))
    if len(data) == size or not data:
        return data
    chunks, remaining = [data], size - len(data)
    while remaining > 0:
        chunk = stream.read(min(remaining, CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_exact(stream: BinaryIO, size: int, what: str) -> bytes:
    data = _read_upto(stream, size)
    if len(data) < size:
        raise TarFormatError(f"truncated: the tar stream ends {size - len(data)} bytes early, inside {what}")
    return data


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 encoding of large numbers
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise TarFormatError(f"not a tar archive (bad number field {field[:12]!r} in a header)") from None


def _check_header(header: bytes, offset: int) -> None:
    """The header checksum (the unsigned byte sum with the checksum field read as spaces) must match. The byte
    sum is taken modulo 65521 from zlib's Adler-32 (whose low half is 1 + the byte sum modulo 65521; a 512-byte
    sum is below 2 x 65521), about six times faster than summing in Python: a corrupt header passes only if its
    stored checksum is off by exactly 65521."""
    stored = header[148:156].rstrip(b"\0 ").strip()
    computed = (zlib.adler32(header) & 0xFFFF) - 1 - sum(header[148:156]) + 8 * 32
    try:
        valid = (int(stored, 8) - computed) % 65521 == 0
    except ValueError:
        valid = False
    if not valid:
        raise TarFormatError(f"not a tar archive, or corrupt: bad header checksum at byte {offset}")


def iter_tar_files(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file in the tar ``stream``, in order.

    Raises:
        TarFormatError: the stream is empty, is not a tar archive, has a corrupt header, or ends before the
            end-of-archive marker (a zero block), i.e. it was cut.
    """
    long_name: str | None = None
    offset = members = 0
    while True:
        header = _read_upto(stream, BLOCK)
        if not header:
            if offset == 0:
                raise TarFormatError("empty file: not a tar archive")
            raise TarFormatError(
                f"truncated: the tar stream ends after {members} files without its end-of-archive marker"
            )
        if len(header) < BLOCK:
            raise TarFormatError(f"truncated: the tar stream ends inside a header at byte {offset}")
        if header == bytes(BLOCK):
            return  # end-of-archive marker
        _check_header(header, offset)
        size = _octal(header[124:136])
        kind = header[156:157]
        padded = size + (-size % BLOCK)
        data = _read_exact(stream, padded, f"the data of file {members + 1}")[:size]
        offset += BLOCK + padded
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
        members += 1
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
    as {"__key__": key, extension: bytes, ...}. A file whose extension the current sample already has starts a
    new sample with the same key (a duplicate key is passed on, never merged over the first sample)."""
    current: dict | None = None
    for name, data in files:
        folder, _, base = name.rpartition("/")
        stem, dot, extension = base.partition(".")
        if not dot:
            continue
        key = f"{folder}/{stem}" if folder else stem
        if current is None or current["__key__"] != key or extension in current:
            if current is not None:
                yield current
            current = {"__key__": key}
        current[extension] = data
    if current is not None:
        yield current
