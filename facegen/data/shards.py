"""Writing WebDataset shards safely: each shard is written under a temporary name and renamed when complete,
with a JSON record beside it. A shard counts as finished only when its record exists, so an interrupted job
rerun keeps finished shards and redoes the rest; a reader never sees a partial shard."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

from facegen.atomic import atomic_file, write_text_atomic

SHARD_PATTERN = "{prefix}-{index:06d}.tar"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file, flushed to disk, and a rename."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n", durable=True)


def shard_path(out: Path, index: int, prefix: str = "shard") -> Path:
    return out / SHARD_PATTERN.format(prefix=prefix, index=index)


def record_path(shard: Path) -> Path:
    return shard.with_suffix(".json")


def finished_record(shard: Path) -> dict | None:
    """The record of a finished shard, or None when the shard must be (re)written."""
    record = record_path(shard)
    if not shard.is_file() or not record.is_file():
        return None
    try:
        return json.loads(record.read_text())
    except (json.JSONDecodeError, OSError):
        return None


class ShardWriter:
    """A context manager writing one ``.tar`` shard of pre-encoded samples (dicts of key -> bytes).

    The tar is written to a temporary beside it (:func:`~facegen.atomic.atomic_file`) and renamed on success, then the record (``extra``, which the caller
    may extend while writing, plus the sample count) is written beside it; on an exception the partial file is removed.
    """

    def __init__(self, path: Path, extra: dict | None = None) -> None:
        self.path = Path(path)
        self.extra = dict(extra or {})
        self.count = 0
        self.bytes = 0
        self._keys: set[str] = set()
        self.record: dict | None = None  # what was written beside the shard, once it is finished

    def __enter__(self) -> ShardWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = atomic_file(self.path, durable=True)
        self._tar = tarfile.open(fileobj=self._file.__enter__(), mode="w", format=tarfile.USTAR_FORMAT)
        return self

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/'")
        if key in self._keys:
            raise ValueError(f"sample key {key!r} is written twice to {self.path}: keys must be unique")
        self._keys.add(key)
        for name, value in sample.items():
            if name == "__key__":
                continue
            data = value.encode() if isinstance(value, str) else value
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o444
            self._tar.addfile(info, io.BytesIO(data))
            self.bytes += len(data)
        self.count += 1

    def __exit__(self, kind, error, traceback) -> None:
        self._tar.close()
        self._file.__exit__(kind, error, traceback)  # renames the tar into place, or removes it on an error
        if kind is not None:
            return
        self.record = {**self.extra, "samples": self.count, "bytes": self.bytes}
        write_json_atomic(record_path(self.path), self.record)


def plan_shards(
    out: Path, count: int, per_shard: int, signature: dict, prefix: str = "shard"
) -> tuple[dict[int, dict], list[tuple[int, int, int]]]:
    """Split items ``0..count`` into shards of ``per_shard`` and find which are already finished.

    Returns:
        (records of finished shards by index, [(index, start, stop)] still to write).

    Raises:
        FileExistsError: a finished shard in ``out`` was written with another ``signature`` (other options).
    """
    signature = json.loads(json.dumps(signature))  # as stored: tuples become lists
    done, todo = {}, []
    for index, start in enumerate(range(0, count, per_shard)):
        path = shard_path(out, index, prefix)
        record = finished_record(path)
        if record is None:
            todo.append((index, start, min(start + per_shard, count)))
        elif record.get("signature") != signature:
            raise FileExistsError(
                f"{path} was written with other options ({record.get('signature')}); "
                "use a new --out folder or delete the old shards"
            )
        else:
            done[index] = record
    return done, todo
