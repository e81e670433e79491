"""Blendshape curves of a video in the layout of Apple ARKit / Epic's Live Link Face recordings, for animation
tools (Unreal's Live Link Face importers, Blender add-ons that read its CSV).

One CSV per tracked face of a video: ``Timecode``, ``BlendShapeCount`` (61), the 52 ARKit blendshapes in Live
Link Face's order (:data:`ARKIT_NAMES`), the head's ``HeadYaw``, ``HeadPitch``, ``HeadRoll`` (radians) and the
eyes' yaw/pitch/roll (:data:`EYE_COLUMNS`), then facegen's ``Tracked`` (1, or 0 for a frame where the face was
lost: its weights are left empty, never interpolated); and a JSON with the same curves.

A face model's expressions map onto the ARKit names by their own names (ICT-FaceKit's ``eyeBlink_L`` is
``EyeBlinkLeft``); an ARKit blendshape the model splits into a left and a right one (ICT's ``browInnerUp_L`` and
``_R``, ``cheekPuff_L`` and ``_R``) is their mean. Columns no expression fills (ICT: ``TongueOut``; the eye
rotations, as the face models have no eyeballs) are written as zeros and listed in the JSON as ``unfilled``.
Weights are clipped to [0, 1].
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from facegen.errors import ConfigError

#: The 52 ARKit blendshapes in the order of Live Link Face's CSV (Unreal's ``EARFaceBlendShape``).
ARKIT_NAMES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawLeft", "JawRight", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthLeft", "MouthRight", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)  # fmt: skip
#: The head rotation columns (radians) and the eyes' (zeros: the face models have no eyeballs).
HEAD_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll")
EYE_COLUMNS = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
#: The columns Live Link Face counts in ``BlendShapeCount``.
CURVE_COUNT = len(ARKIT_NAMES) + len(HEAD_COLUMNS) + len(EYE_COLUMNS)


class TrackedFrame(NamedTuple):
    """One frame of a video: its index, time (seconds), and for a frame where the face was tracked its
    expression weights (K,) in the model's order and head rotation (yaw, pitch, roll) in radians, else None."""

    frame: int
    time: float
    expression: np.ndarray | None
    head: tuple[float, float, float] | None


def arkit_name(name: str) -> str:
    """A model's expression name in ARKit's spelling: ``eyeBlink_L`` -> ``EyeBlinkLeft``."""
    name = re.sub(r"_L$", "Left", re.sub(r"_R$", "Right", name))
    return name[:1].upper() + name[1:]


def arkit_mapping(expression_names: Sequence[str] | None) -> list[list[int]]:
    """For each of :data:`ARKIT_NAMES`, the indices of the model's expressions whose mean fills it (empty: none).

    Raises:
        ConfigError: the model has no named expressions, or none of them is an ARKit blendshape.
    """
    if not expression_names:
        raise ConfigError(
            "blendshape curves need a face model with named expressions (e.g. ICT-FaceKit's ARKit ones)"
        )
    spelled = [arkit_name(name) for name in expression_names]
    mapping = []
    for target in ARKIT_NAMES:
        exact = [i for i, name in enumerate(spelled) if name == target]
        sides = [i for i, name in enumerate(spelled) if name in (target + "Left", target + "Right")]
        mapping.append(exact or (sides if len(sides) == 2 else []))
    if not any(mapping):
        raise ConfigError(
            f"blendshape curves: none of the face model's expressions ({', '.join(expression_names[:4])}, ...) "
            "is an ARKit blendshape"
        )
    return mapping


def timecode(seconds: float, fps: float) -> str:
    """Live Link Face's ``HH:MM:SS:FF.mmm``: hours, minutes, seconds, frame within the second at ``fps`` and
    the frame's fraction."""
    frames = seconds * fps
    whole = int(math.floor(frames + 1e-9))
    second, frame = divmod(whole, max(1, round(fps)))
    hours, rest = divmod(second, 3600)
    minutes, second = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{second:02d}:{frame:02d}.{round((frames - whole) * 1000) % 1000:03d}"


def curves(
    frames: Sequence[TrackedFrame], expression_names: Sequence[str] | None, fps: float
) -> tuple[str, dict]:
    """The CSV text and the JSON document of a video's ``frames`` (sorted by frame)."""
    mapping = arkit_mapping(expression_names)
    header = ["Timecode", "BlendShapeCount", *ARKIT_NAMES, *HEAD_COLUMNS, *EYE_COLUMNS, "Tracked"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    records = []
    for item in frames:
        if item.expression is None:
            writer.writerow([timecode(item.time, fps), CURVE_COUNT, *[""] * (CURVE_COUNT), 0])
            records.append({"frame": item.frame, "time": item.time, "tracked": False})
            continue
        weights = [
            float(np.clip(item.expression[sources].mean(), 0.0, 1.0)) if sources else 0.0
            for sources in mapping
        ]
        head = [float(value) for value in item.head]
        writer.writerow(
            [
                timecode(item.time, fps),
                CURVE_COUNT,
                *(f"{w:.6f}" for w in weights),
                *(f"{h:.6f}" for h in head),
            ]
            + ["0.000000"] * len(EYE_COLUMNS)
            + [1]
        )
        records.append(
            {
                "frame": item.frame,
                "time": item.time,
                "tracked": True,
                "weights": weights,
                "head_radians": head,
            }
        )
    document = {
        "fps": fps,
        "names": list(ARKIT_NAMES),
        "head": list(HEAD_COLUMNS),
        "unfilled": [name for name, sources in zip(ARKIT_NAMES, mapping, strict=True) if not sources]
        + list(EYE_COLUMNS),
        "frames": records,
    }
    return text.getvalue(), document
