"""Atomic file writes: the content goes to a hidden ``.<name>.part`` beside the target and is renamed over it,
so an interrupted job never leaves a half-written file under the final name."""

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
