"""Images and videos written atomically (through :mod:`facegen.atomic`: a temporary beside the target, renamed
over it); :func:`child_folder` keeps every output folder inside its output root."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from facegen.atomic import atomic_path, write_bytes_atomic

#: OpenCV's PNG settings for :func:`write_png_atomic`.
PNG_SETTINGS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_UP,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
]

#: JPEG quality of :func:`write_jpeg_atomic` (no visible loss on overlays of photos).
JPEG_QUALITY = 95


def write_png_atomic(path: Path, image: np.ndarray) -> Path:
    """``image`` as a PNG file (:func:`png_bytes`)."""
    return write_bytes_atomic(path, png_bytes(image, path))


def png_bytes(image: np.ndarray, name: object = "image") -> bytes:
    """``image`` (H, W, 3) RGB or (H, W) uint8/uint16 as PNG bytes, encoded for speed: zlib level 1 (about half
    the time of the default level for a few percent more bytes), PNG's "up" filter on every row and run-length
    matching (together 1.5-2.4x faster than level 1 with adaptive filters, within 6 % of its size on textures
    and photos). ``name``: what the error names."""
    ok, encoded = cv2.imencode(".png", _bgr(image), PNG_SETTINGS)
    if not ok:
        raise OSError(f"{name}: PNG encoding failed for an image of shape {image.shape}")
    return encoded.tobytes()


def write_jpeg_atomic(path: Path, image: np.ndarray, quality: int = JPEG_QUALITY) -> Path:
    """``image`` (H, W, 3) RGB uint8 as a JPEG of ``quality`` (1-100): for pictures of photos, where a PNG
    would cost ten times the encoding time and five times the bytes (a 4K photo: 0.4 s and 8 MB as PNG)."""
    ok, encoded = cv2.imencode(".jpg", _bgr(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"{path}: JPEG encoding failed for an image of shape {image.shape}")
    return write_bytes_atomic(path, encoded.tobytes())


def _bgr(image: np.ndarray) -> np.ndarray:
    """``image`` as OpenCV encodes it: (H, W, 3) RGB -> contiguous BGR, interleaved by OpenCV in one pass (from
    planes when the array is a channel-first buffer seen as (H, W, 3), as :func:`~facegen.export.pictures.to_uint8`
    returns); other images contiguous as they are."""
    if image.ndim != 3 or image.shape[-1] != 3:
        return np.ascontiguousarray(image)
    if image[..., 0].flags.c_contiguous:
        return cv2.merge([image[..., 2], image[..., 1], image[..., 0]])
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)


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


def write_video_atomic(path: Path, frames: Iterable[np.ndarray], fps: float) -> Path:
    """RGB ``frames`` (each (H, W, 3) uint8, read one at a time; frames of another size than the first are
    resized to it) as an MPEG-4 video (OpenCV's FFmpeg, codec ``mp4v``) at ``fps`` frames per second, written
    under a temporary name and renamed.

    Raises:
        OSError: naming the path, when no frame is given or the encoder cannot be opened.
    """
    path, frames = Path(path), iter(frames)
    first = next(frames, None)
    if first is None:
        raise OSError(f"{path}: no frames to write")
    height, width = first.shape[:2]
    with atomic_path(path, path.suffix) as temporary:
        writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
        if not writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot open an MPEG-4 video writer")
        try:
            for frame in itertools.chain([first], frames):
                if frame.shape[:2] != (height, width):
                    frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                writer.write(np.ascontiguousarray(frame[..., ::-1]))
        finally:
            writer.release()
    return path
