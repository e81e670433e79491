"""Video input for prediction: the frames of a video file, sampled at a chosen rate, decoded with OpenCV's
FFmpeg backend (part of the ``opencv-python`` wheel facegen already depends on)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: Frames a video may fall short of its header's frame count without being reported as truncated (containers
#: whose count is an estimate from the duration).
TRUNCATION_SLACK = 1
#: File suffixes read as videos.
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class UnreadableVideo(ValueError):
    """A video that cannot be opened or decoded; the message names it."""


class TruncatedVideo(UnreadableVideo):
    """Raised after the last frame of a video that ended before the frame count its header declares (a file cut
    short): the frames before were given; the message names the file and both counts."""


class VideoFrame(NamedTuple):
    """One sampled frame: its index among the video's decoded frames, its time in seconds and its pixels
    (H, W, 3) uint8 RGB."""

    index: int
    time: float
    pixels: np.ndarray


def is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_SUFFIXES)


def read_frames(path: str | Path, fps: float | None = None) -> Iterator[VideoFrame]:
    """The frames of the video at ``path`` in order; with ``fps``, only the first frame at or after each tick
    of a ``fps`` clock (from the first frame's time), so a 30 fps video at ``fps`` 10 gives every third frame.

    Raises:
        UnreadableVideo: the file cannot be opened or gives no frame.
        TruncatedVideo: after the last frame, when fewer frames decoded than the header declares.
    """
    import cv2

    if fps is not None and fps <= 0:
        raise ValueError(f"video frame rate must be > 0, got {fps}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UnreadableVideo(f"{path}: cannot open the video (not a video, or a codec FFmpeg lacks)")
    native = capture.get(cv2.CAP_PROP_FPS) or 0.0
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    try:
        index, start, next_time, given = 0, None, 0.0, 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            milliseconds = capture.get(cv2.CAP_PROP_POS_MSEC)
            time = milliseconds / 1000.0 if milliseconds > 0 or index == 0 else index / max(native, 1e-6)
            start = time if start is None else start
            if fps is None or time - start >= next_time - 1e-6:
                if fps is not None:  # the next tick after this frame (skips ticks a gap jumped over)
                    next_time = (math.floor((time - start) * fps + 1e-6) + 1) / fps
                given += 1
                yield VideoFrame(index, round(time, 6), np.ascontiguousarray(frame[..., ::-1]))
            index += 1
    finally:
        capture.release()
    if given == 0:
        raise UnreadableVideo(f"{path}: no frame could be decoded")
    if index < declared - TRUNCATION_SLACK:
        raise TruncatedVideo(
            f"{path}: the video ended after {index} of the {declared} frames its header declares"
        )
