"""The iBUG 68-point landmark scheme: its size, index groups and mirror permutation.

Pixel convention everywhere in facegen: (x, y) with (0, 0) at the centre of the top-left pixel (OpenCV).
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 68


def _mirror_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(17)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # eyebrows
    pairs += [(27 + i, 27 + i) for i in range(4)]  # nose bridge
    pairs += [(31 + i, 35 - i) for i in range(5)]  # nostrils
    pairs += list(zip([36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46], strict=True))  # eyes
    pairs += [(48 + i, 54 - i) for i in range(7)] + [(55 + i, 59 - i) for i in range(5)]  # outer lips
    pairs += [(60 + i, 64 - i) for i in range(5)] + [(65 + i, 67 - i) for i in range(3)]  # inner lips
    permutation = np.empty(NUM_LANDMARKS, dtype=np.int64)
    for a, b in pairs:
        permutation[a], permutation[b] = b, a
    return permutation


#: (68,) index map of a horizontally mirrored face: landmark i of the flipped image is landmark
#: ``MIRROR_PERMUTATION[i]`` of the original, x-mirrored.
MIRROR_PERMUTATION = _mirror_permutation()

#: Index groups, for per-landmark weights and drawing.
JAW = np.arange(0, 17)
INNER = np.arange(17, 68)
EYES = np.arange(36, 48)
MOUTH_INNER = np.arange(60, 68)


def mirror_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks (..., 68, 2) of the horizontally flipped image of ``width`` pixels."""
    flipped = landmarks[..., MIRROR_PERMUTATION, :].copy()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


#: Face-mesh vertex for each iBUG-68 landmark (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
MEDIAPIPE_TO_IBUG68 = np.array(
    [
        127,
        234,
        93,
        58,
        172,
        136,
        149,
        148,
        152,
        377,
        378,
        365,
        397,
        288,
        323,
        454,
        356,
        70,
        63,
        105,
        66,
        107,
        336,
        296,
        334,
        293,
        300,
        168,
        197,
        5,
        4,
        75,
        97,
        2,
        326,
        305,
        33,
        160,
        158,
        133,
        153,
        144,
        362,
        385,
        387,
        263,
        373,
        380,
        61,
        39,
        37,
        0,
        267,
        269,
        291,
        405,
        314,
        17,
        84,
        181,
        78,
        82,
        13,
        312,
        308,
        317,
        14,
        87,
    ],
)
