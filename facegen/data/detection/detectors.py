"""Face detection with 68 landmarks, behind one small interface.

Backends:
- ``face-alignment`` (default): S3FD detector + 2D-FAN-4 (Bulat & Tzimiropoulos). Weights are fetched into the
  torch hub cache (``$TORCH_HOME/hub/checkpoints``) on first use; offline, a clear error says what to place where.
- ``mediapipe``: MediaPipe 0.10.21's full-range face detector and 468-point face mesh, whose models ship inside
  the wheel (no download at run time; ``pip install "facegen[mediapipe]"``). The mesh is reduced to the iBUG 68
  scheme with :func:`~facegen.geometry.landmarks.ibug68_from_mediapipe`.
- ``litert``: the same MediaPipe models run with LiteRT (``pip install "facegen[litert]"``: numpy 2, nothing
  downgraded), taken once from the mediapipe wheel on PyPI into the cache (:mod:`facegen.data.detection.litert_face`).
- ``dlib``: the ``litert`` backend's faces and dense points, with the 68 points of dlib's iBUG 300-W shape
  predictor (``pip install "facegen[dlib,litert]"``; :mod:`facegen.data.detection.dlib_landmarks`): on the shared
  annotated photos 2.26 % NME against litert's 3.84 %. Its model excludes commercial use (iBUG 300-W's terms).
- ``files``: only landmark files beside the photos (``.pts``, dlib XML); photos without them are rejected.
- ``auto``: :data:`AUTO_ORDER`, each where the previous finds no face (or cannot start): dlib (on LiteRT's faces,
  the mesh's points where dlib is not trusted) first, as measured on the wild development set (86 faces: 2.26 %
  box NME against LiteRT's 3.68 %, every face found; ``benchmarks/landmarks.py --wild``); face-alignment, whose
  weights could not be fetched where this was measured, after the measured backends.

Every backend retries a photo where it finds no face: twice as large when the photo is small, then turned by
+-30 degrees in the image plane (:class:`RetryingDetector`); a photo that still gives no face is rejected with
what was tried.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np

from facegen.data.detection.face import DetectedFace, LandmarkDetector
from facegen.errors import ConfigError, FacegenError, check_choice
from facegen.geometry.landmarks import ibug68_from_mediapipe

#: The backends ``auto`` tries, in order (see the module docstring).
AUTO_ORDER = ("dlib", "litert", "face-alignment", "mediapipe")
#: Landmark backends of ``facegen prepare`` and of predicting from photos.
Detector = Literal["face-alignment", "mediapipe", "litert", "dlib", "auto", "files"]
DETECTORS = get_args(Detector)


#: face-alignment's weight files (S3FD, 2D-FAN-4) -> the address face-alignment downloads them from.
FACE_ALIGNMENT_WEIGHTS = {
    "s3fd-619a316812.pth": "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    "2DFAN4-11f355bf06.pth.tar": "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
}


def face_alignment_folder() -> Path:
    """Where face-alignment looks for its weights: torch hub's ``checkpoints`` (``$TORCH_HOME/hub/...``)."""
    from torch.hub import get_dir

    return Path(get_dir()) / "checkpoints"


class DetectorUnavailable(FacegenError, RuntimeError):
    """A landmark backend that cannot start (missing package or weights); the message says what to do."""


class FaceAlignmentDetector:
    """face-alignment's S3FD + 2D-FAN-4 on ``device`` (no ``torch.compile``: it costs minutes on a CPU)."""

    name = "face-alignment"

    def __init__(self, device: str = "cpu", face_detector: str = "sfd", setting: str = "--detector") -> None:
        try:
            import face_alignment
        except ImportError as error:
            raise DetectorUnavailable(
                f"face-alignment is not installed ({error}): pip install face-alignment"
            ) from None
        try:
            self._model = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D,
                device=device,
                flip_input=False,
                face_detector=face_detector,
                compile=False,
            )
        except Exception as error:
            if isinstance(error, (KeyboardInterrupt, MemoryError)):
                raise
            raise DetectorUnavailable(
                f"face-alignment cannot load its weights ({type(error).__name__}): run `facegen fetch --detector "
                f"face-alignment`, or offline put {' and '.join(FACE_ALIGNMENT_WEIGHTS)} into "
                f"{face_alignment_folder()} (or set TORCH_HOME); or use {setting} litert or {setting} files"
            ) from None

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        with warnings.catch_warnings():  # "No faces were detected" is a normal outcome here
            warnings.filterwarnings("ignore", message="No faces were detected")
            landmarks, scores, boxes = self._model.get_landmarks_from_image(
                image, return_bboxes=True, return_landmark_score=True
            )
        if landmarks is None:
            return []
        faces = []
        for points, peaks, box in zip(landmarks, scores, boxes, strict=True):
            points = np.asarray(points, np.float32)[:, :2]
            score = float(box[4]) if len(box) > 4 else 1.0
            confidence = np.clip(np.nan_to_num(np.asarray(peaks, np.float32).reshape(-1)), 0.0, 1.0)
            box = tuple(float(v) for v in box[:4])
            faces.append(DetectedFace(points, box, score, self.name, confidence))
        return faces


class MediaPipeDetector:
    """MediaPipe's full-range face detector, then the face mesh on a square crop around each detection."""

    name = "mediapipe"

    def __init__(self, min_confidence: float = 0.5, max_faces: int = 8) -> None:
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as error:
            raise DetectorUnavailable(
                f"MediaPipe's face solutions are not importable ({error}). "
                'Install them with: pip install "facegen[mediapipe]" (mediapipe 0.10.21, which ships its models).'
            ) from None
        self._detector = face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence
        )
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, min_detection_confidence=0.3)
        self.max_faces = max_faces

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        found = self._detector.process(image).detections or []
        faces = []
        for detection in found[: self.max_faces]:
            box = detection.location_data.relative_bounding_box
            x0, y0 = box.xmin * width, box.ymin * height
            x1, y1 = x0 + box.width * width, y0 + box.height * height
            mesh = self._mesh(image, (x0, y0, x1, y1))
            if mesh is not None:
                box, score = (x0, y0, x1, y1), float(detection.score[0])
                faces.append(DetectedFace(ibug68_from_mediapipe(mesh), box, score, self.name, dense=mesh))
        return faces

    def _mesh(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
        """(468, 2) face-mesh points from the mesh run on a square crop of twice the detection's size."""
        height, width = image.shape[:2]
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = max(box[2] - box[0], box[3] - box[1])
        left, top = int(max(0, centre_x - half)), int(max(0, centre_y - half))
        right, bottom = int(min(width, centre_x + half)), int(min(height, centre_y + half))
        crop = np.ascontiguousarray(image[top:bottom, left:right])
        result = self._mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        points = result.multi_face_landmarks[0].landmark
        crop_h, crop_w = crop.shape[:2]
        mesh = np.array([(p.x * crop_w, p.y * crop_h) for p in points], np.float32)
        # MediaPipe's coordinates start at the image's edge; facegen's at the first pixel's centre
        return mesh + np.array([left - 0.5, top - 0.5], np.float32)


def build_detector(
    name: Detector, device: str = "cpu", setting: str = "--detector"
) -> LandmarkDetector | None:
    """The named backend; ``files`` returns None (landmark files only). ``setting``: the option that chose it,
    named in error messages."""
    if name == "face-alignment":
        return RetryingDetector(FaceAlignmentDetector(device=device, setting=setting))
    if name == "mediapipe":
        return RetryingDetector(MediaPipeDetector())
    if name == "litert":
        return RetryingDetector(_litert(setting))
    if name == "dlib":
        return RetryingDetector(_dlib(setting))
    if name == "auto":
        return DetectorChain([LazyDetector(backend, device, setting) for backend in AUTO_ORDER])
    if name == "files":
        return None
    raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


def _litert(setting: str) -> LandmarkDetector:
    from facegen.data.detection.litert_face import LiteRTFaceMesh, ModelsUnavailable, fetch_models
    from facegen.morphable.download import cache_folder

    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError as error:
        raise DetectorUnavailable(
            f'{setting} litert: LiteRT is not installed ({error}); install it with: pip install "facegen[litert]"'
        ) from None
    try:
        return LiteRTFaceMesh(fetch_models(cache_folder()))
    except ModelsUnavailable as error:
        raise DetectorUnavailable(f"{setting} litert: {error}") from None


def _dlib(setting: str) -> LandmarkDetector:
    from facegen.data.detection.dlib_landmarks import DlibLandmarks, ModelMissing, predictor_path

    try:
        import dlib  # noqa: F401

        model = predictor_path()
    except (ImportError, ModelMissing) as error:
        raise DetectorUnavailable(
            f'{setting} dlib: {error}; install it with: pip install "facegen[dlib,litert]"'
        ) from None
    return DlibLandmarks(_litert(setting), model)


def miss_reason(detector: LandmarkDetector) -> str:
    """Why ``detector`` found no face in the photo it was last given (what it tried)."""
    return getattr(detector, "miss", "") or f"{detector.name} found no face"


class RetryingDetector:
    """``backend``, retried on a photo where it finds no face: at ``upscale`` times the size when the photo's
    longer side is under ``small`` pixels, then turned by each of ``angles`` (degrees) about its centre on a
    canvas that holds all of it. Landmarks and boxes of a retry are mapped back to the photo's pixels."""

    def __init__(
        self,
        backend: LandmarkDetector,
        small: int = 640,
        upscale: float = 2.0,
        angles: tuple[float, ...] = (30.0, -30.0),
    ) -> None:
        self.backend, self.small, self.upscale, self.angles = backend, small, upscale, angles
        self.name = backend.name
        self.miss = ""

    def attempts(self, height: int, width: int) -> list[tuple[str, np.ndarray, tuple[int, int]]]:
        """(label, 2 x 3 photo -> attempt affine, attempt size (W, H)) of every try, in order."""
        tries = [("as is", np.eye(2, 3), (width, height))]
        if max(height, width) < self.small:
            size = (round(width * self.upscale), round(height * self.upscale))
            tries.append((f"{self.upscale:g}x larger", np.eye(2, 3) * self.upscale, size))
        centre = ((width - 1) / 2, (height - 1) / 2)
        for angle in self.angles:
            matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
            cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
            size = (int(np.ceil(height * sin + width * cos)), int(np.ceil(height * cos + width * sin)))
            matrix[:, 2] += ((size[0] - 1) / 2 - centre[0], (size[1] - 1) / 2 - centre[1])
            tries.append((f"turned {angle:+g} degrees", matrix, size))
        return tries

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        height, width = image.shape[:2]
        tried = []
        for label, matrix, size in self.attempts(height, width):
            identity = np.allclose(matrix, np.eye(2, 3))
            view = image if identity else cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR)
            faces = self.backend.detect(np.ascontiguousarray(view))
            if faces:
                self.miss = ""
                return (
                    faces
                    if identity
                    else [_mapped(face, cv2.invertAffineTransform(matrix)) for face in faces]
                )
            tried.append(label)
        self.miss = f"{self.name} found no face (tried {', '.join(tried)})"
        return []


def _mapped(face: DetectedFace, inverse: np.ndarray) -> DetectedFace:
    """``face`` detected in a transformed photo, in the photo's pixels (``inverse``: attempt -> photo, 2 x 3)."""
    landmarks = (face.landmarks @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)
    dense = None if face.dense is None else (face.dense @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)
    x0, y0, x1, y1 = face.bbox
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ inverse[:, :2].T + inverse[:, 2]
    box = (*corners.min(0).tolist(), *corners.max(0).tolist())
    return DetectedFace(
        landmarks, tuple(float(v) for v in box), face.score, face.detector, face.confidence, dense
    )


class DetectorChain:
    """The first of ``detectors`` that finds a face; one that cannot start (:class:`DetectorUnavailable`) is
    skipped with its reason, and only when none can start is that an error."""

    def __init__(self, detectors: list[LandmarkDetector]) -> None:
        self.detectors = detectors
        self.name = "+".join(detector.name for detector in detectors)
        self.miss = ""
        self._unavailable: dict[str, str] = {}

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        reasons = []
        for detector in self.detectors:
            if detector.name in self._unavailable:
                reasons.append(f"{detector.name} unavailable")
                continue
            try:
                faces = detector.detect(image)
            except DetectorUnavailable as error:
                self._unavailable[detector.name] = str(error)
                warnings.warn(f"{detector.name} cannot start, using the next detector: {error}", stacklevel=2)
                reasons.append(f"{detector.name} unavailable")
                continue
            if faces:
                self.miss = ""
                return faces
            reasons.append(miss_reason(detector))
        if len(self._unavailable) == len(self.detectors):
            first = next(iter(self._unavailable.values()))
            raise DetectorUnavailable(
                f"no detector can start ({', '.join(self._unavailable)}); `facegen fetch --detector auto` shows each "
                f"backend's state. First: {first}"
            )
        self.miss = "; ".join(reasons)
        return []


class LazyDetector:
    """The backend ``name``, built on its first :meth:`detect`: photos with landmark files beside them never
    load (or download) a detector. ``setting`` names the option that chose it in error messages."""

    def __init__(self, name: Detector, device: str = "cpu", setting: str = "--detector") -> None:
        self.name, self.device, self.setting = name, device, setting
        self._backend: LandmarkDetector | None = None

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        if self._backend is None:
            self._backend = build_detector(self.name, self.device, self.setting)
        return self._backend.detect(image)

    @property
    def miss(self) -> str:
        """Why the last photo gave no face (empty before the backend is built)."""
        return "" if self._backend is None else miss_reason(self._backend)


def lazy_detector(name: Detector, device: str = "cpu", setting: str = "--detector") -> LazyDetector | None:
    """A :class:`LazyDetector`, or None for ``files`` (landmark files only)."""
    check_choice(setting, name, Detector)
    return None if name == "files" else LazyDetector(name, device, setting)
