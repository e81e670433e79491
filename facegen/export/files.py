"""Atomic file writes: the content goes to a hidden ``.<name>.part`` beside the target and is renamed over it,
so an interrupted job never leaves a half-written file under the final name. :func:`child_folder` keeps every
output folder inside its output root."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    path = Path(path)
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_png_atomic(path: Path, image: np.ndarray) -> Path:
    """``image`` (H, W, 3) or (H, W) uint8 as a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())


def child_folder(root: Path, name: str) -> Path:
    """``root / name`` for a single safe path component ``name`` (see :class:`facegen.data.keys.OutputNames`),
    checked to resolve inside ``root`` (an existing symbolic link that leads elsewhere is refused).

    Raises:
        PermissionError: naming the path, when it would leave ``root``.
    """
    root = Path(root)
    path = root / name
    if (
        name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or not path.resolve().is_relative_to(root.resolve())
    ):
        raise PermissionError(f"{path}: refusing to write outside the output folder {root}")
    return path
