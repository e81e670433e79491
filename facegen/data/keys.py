"""Safe, unique names from untrusted ones: shard sample keys from photo paths, and file-system names from keys.

Photo paths and shard keys come from users' folders and from shared data sets, so they may hold anything:
separators, ``..``, non-ASCII letters only, names that differ only in case or extension. A name made from them
keeps a readable part (letters, digits, ``_`` and ``-``) and, when that part alone would not be unique or does
not spell the original faithfully, a short hash of the original, so two different inputs never share a name
(compared case-insensitively, as macOS and Windows file systems do).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

#: Characters a readable part keeps; every other run of characters becomes one ``_``.
_UNSAFE = re.compile(r"[^0-9A-Za-z_-]+")
#: Longest readable part, in characters (file names stay well under the usual 255-byte limit).
MAX_READABLE = 96
#: Longest key stem kept as it is: a sample's tar member (``<stem>_f<i>.<field>``) must fit the 100 characters of
#: a tar header's name; a longer stem keeps its first characters plus a hash of the whole path.
MAX_STEM = 64
#: Readable characters a shortened stem keeps (plus ``-`` and at least 8 hexadecimal digits).
SHORTENED_STEM = 48


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def readable(name: str) -> str:
    """Letters, digits, ``_`` and ``-`` of ``name`` (other runs become ``_``), without leading/trailing ``_.-``,
    at most :data:`MAX_READABLE` characters; may be empty."""
    return _UNSAFE.sub("_", name).strip("_-")[:MAX_READABLE].strip("_-")


def _hashed(part: str, name: str, taken: set[str], fallback: str) -> str:
    digest = _digest(name)
    for length in (8, 16, len(digest)):
        candidate = f"{part or fallback}-{digest[:length]}"
        if candidate.lower() not in taken:
            return candidate
    raise ValueError(f"cannot make a unique name for {name!r}")  # a full SHA-256 collision


def unique_stems(names: Iterable[str], videos: Iterable[str] = ()) -> dict[str, str]:
    """A unique key stem for each photo path: the readable part of the path without its extension (``a/b.jpg``
    -> ``a_b``) when no other path has the same one, else that part plus a hash of the whole path (``x.jpg`` and
    ``x.png`` -> ``x-1f3a...`` and ``x-9c0d...``); a part longer than :data:`MAX_STEM` is shortened the same
    way. ``videos`` (also among ``names``): a photo whose part has the form of one of their frames' stems
    (:func:`frame_stem`) also gets a hash, so ``clip_t000000.jpg`` never meets frame 0 of ``clip.mp4``.
    Deterministic for a given set of names."""
    videos = set(videos)
    names = sorted(set(names) | videos)
    parts = {
        name: readable(name.rsplit(".", 1)[0] if "." in name.rsplit("/", 1)[-1] else name) for name in names
    }
    counts = Counter(part.lower() for part in parts.values())
    frame_of_a_video = re.compile(
        "|".join(f"{re.escape(parts[video])}_t[0-9]+" for video in sorted(videos)) or "(?!)", re.IGNORECASE
    )
    stems = {
        name: part
        for name, part in parts.items()
        if part
        and counts[part.lower()] == 1
        and len(part) <= MAX_STEM
        and (name in videos or not frame_of_a_video.fullmatch(part))
    }
    taken = {stem.lower() for stem in stems.values()}
    for name in names:
        if name not in stems:
            stems[name] = _hashed(parts[name][:SHORTENED_STEM].strip("_-"), name, taken, "photo")
            taken.add(stems[name].lower())
    return stems


def frame_stem(video_stem: str, index: int) -> str:
    """The key stem of frame ``index`` of the video with key stem ``video_stem``."""
    return f"{video_stem}_t{index:06d}"


def face_key(stem: str, index: int) -> str:
    """The sample key of face ``index`` of the photo with key stem ``stem``."""
    return f"{stem}_f{index}"


class OutputNames:
    """File-system names for untrusted keys, unique within one run (one instance per output folder and run).

    A key that is already a safe name (readable characters only, not starting with ``-``) is used as it is;
    any other key becomes its readable part plus a hash of the key, so ``a/b`` and ``a_b`` stay apart.
    """

    def __init__(self) -> None:
        self._used: dict[str, str] = {}  # lower-cased name -> key

    def name(self, key: str) -> str | None:
        """The name for ``key``, or None when this run already named the same key (a duplicate key)."""
        part = readable(key)
        name = part if part and part == key else _hashed(part, key, set(), "item")
        if name.lower() in self._used:
            if self._used[name.lower()] == key:
                return None
            name = _hashed(part, key, set(self._used), "item")  # differs from an earlier key only in case
        self._used[name.lower()] = key
        return name
