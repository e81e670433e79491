"""The ``dlib`` landmark backend: faces found by the ``litert`` backend (MediaPipe's full-range detector and face
mesh on LiteRT: profiles, small faces in group photos), their 68 points placed by dlib's shape predictor
(``shape_predictor_68_face_landmarks.dat`` from the ``face_recognition_models`` package), which was trained on
iBUG 300-W and so follows the annotation convention of 68-point benchmarks, jaw contour included. The mesh's
dense points stay with each face.

The predictor starts from a face box as dlib's frontal HOG detector draws it (the boxes it was trained with): the
detector runs on the region around each mesh, enlarged so the face is about :data:`FACE_PIXELS` wide, and its box
is taken when it overlaps the box the mesh's 68 points give (intersection over union above :data:`MATCH_IOU`);
otherwise (turned or partly hidden faces the HOG detector misses) that mesh box is used. The mesh box is the
68 points' bounding box moved and scaled by :data:`BOX_FROM_POINTS`, measured on the 43 faces of dlib's example
annotations (``photos/pseudo/*.xml`` in the shared assets: boxes from dlib's detector, points from this
predictor): centre offset (-0.018, -0.075) and size 1.093 x 1.094 in units of the square root of the points'
box area.

The predictor is reliable where dlib's own detector accepts the face and can fail badly where it does not
(turned, partly hidden faces): on the wild development set (86 faces; ``benchmarks/landmarks.py --wild``) the 8
faces without a HOG box averaged 9.5 % box NME against the mesh's 4.4 %. So each face's 68 points are chosen
by measured reliability: dlib's where the HOG detector accepted the face or where dlib's inner points (17-67)
agree with the mesh's within :data:`AGREEMENT` of the face size, else the mesh's (the face's ``detector`` then
says ``litert``). Over the whole set this gives 2.26 % box NME (dlib alone 2.76 %, the mesh alone 3.68 %) and
2 faces over 10 % NME_io (5 and 7); the threshold was chosen on the whole set (0.03-0.05 give the same).
Each point's ``confidence`` is the agreement of the two models there, ``1 / (1 + (d / AGREEMENT)²)`` with d
the point distance over the face size: low where one of them is likely wrong (often the far jaw of a turned
face, where the two conventions differ too).

The trained model's licence follows its training data: iBUG 300-W excludes commercial use (dlib's model notes);
the ``face_recognition_models`` package ships it as is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from facegen.data.detection.face import DetectedFace
from facegen.data.detection.litert_face import LiteRTFaceMesh
from facegen.geometry.boxes import box_iou

#: The predictor's file inside the ``face_recognition_models`` package.
MODEL = "models/shape_predictor_68_face_landmarks.dat"
#: Mesh box from the 68 points' box (see the module docstring): centre offset x, y and width, height, in units
#: of sqrt(width x height) of the points' box.
BOX_FROM_POINTS = (-0.018, -0.075, 1.093, 1.094)
#: A HOG box is the face's when its IoU with the mesh box is above this.
MATCH_IOU = 0.3
#: Face width (pixels) at which the HOG detector runs (it finds faces from 80 pixels).
FACE_PIXELS = 160.0
#: dlib's points are kept without a HOG box when their inner points are within this mean distance of the
#: mesh's, in units of sqrt(w x h) of the mesh points' box (see the module docstring).
AGREEMENT = 0.05


class ModelMissing(RuntimeError):
    """dlib or the predictor's package is not installed."""


def predictor_path(model: str = MODEL) -> Path:
    """The 68-point predictor (or another ``model`` file) of the installed ``face_recognition_models`` (located
    without importing the package, whose ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing("the package face_recognition_models is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / model
    if not path.is_file():
        raise ModelMissing(f"{path} is missing from face_recognition_models")
    return path


def mesh_box(points: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) the box dlib's detector would draw around a face with 68 points ``points`` (68, 2)."""
    low, high = points.min(0), points.max(0)
    size = float(np.sqrt(np.prod(np.maximum(high - low, 1e-6))))
    dx, dy, width, height = BOX_FROM_POINTS
    cx, cy = (low + high) / 2 + np.array([dx, dy]) * size
    return np.array(
        [cx - width * size / 2, cy - height * size / 2, cx + width * size / 2, cy + height * size / 2]
    )


class DlibLandmarks:
    """Faces of ``mesh`` (a :class:`~facegen.data.detection.litert_face.LiteRTFaceMesh`) with dlib's 68 points (see the
    module docstring)."""

    name = "dlib"

    def __init__(self, mesh: LiteRTFaceMesh, model: Path) -> None:
        import dlib

        self._dlib, self.mesh = dlib, mesh
        self._hog = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))

    def start_box(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, bool]:
        """The predictor's starting box (x0, y0, x1, y1) for the face with mesh points ``points`` (68, 2), and
        whether it is the HOG detector's (else the box computed from the points)."""
        guess = mesh_box(points)
        side = guess[2:] - guess[:2]
        height, width = image.shape[:2]
        x0, y0 = np.maximum(np.floor(guess[:2] - side), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(guess[2:] + side), [width, height]).astype(int)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return guess, False
        scale = FACE_PIXELS / max(float(side.mean()), 1.0)
        region = cv2.resize(image[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        found = [
            np.array([r.left(), r.top(), r.right(), r.bottom()]) / scale + [x0, y0, x0, y0]
            for r in self._hog(np.ascontiguousarray(region), 0)
        ]
        best = max(found, key=lambda box: box_iou(box, guess), default=None)
        accepted = best is not None and box_iou(best, guess) > MATCH_IOU
        return (best, True) if accepted else (guess, False)

    def detect(self, image: np.ndarray):
        """:class:`~facegen.data.detection.detectors.DetectedFace` per face the mesh finds, with dlib's 68 points."""

        image = np.ascontiguousarray(image)
        faces = []
        for face in self.mesh.detect(image):
            box, accepted = self.start_box(image, face.landmarks)
            shape = self._predictor(image, self._dlib.rectangle(*(int(v) for v in np.round(box).astype(int))))
            points = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            faces.append(fused(points, face, accepted))
        return faces


def fused(points: np.ndarray, face, accepted: bool):
    """The mesh's ``face`` (a :class:`~facegen.data.detection.detectors.DetectedFace`) with dlib's 68 ``points`` where they
    are trusted (``accepted``: the HOG detector's box started them, or their inner points agree with the
    mesh's), else its own; the confidence of each point is the two models' agreement (module docstring)."""

    distance = agreement(points, face.landmarks)
    trusted = accepted or float(distance[17:].mean()) < AGREEMENT
    confidence = (1.0 / (1.0 + (distance / AGREEMENT) ** 2)).astype(np.float32)
    chosen, name = (points, DlibLandmarks.name) if trusted else (face.landmarks, face.detector)
    return DetectedFace(chosen, face.bbox, face.score, name, confidence, face.dense)


def agreement(points: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """(68,) distance of each of dlib's ``points`` (68, 2) to the mesh's, over sqrt(w x h) of the mesh points' box."""
    size = float(np.sqrt(np.prod(np.maximum(np.ptp(mesh, axis=0), 1e-6))))
    return np.linalg.norm(points - mesh, axis=1) / size
