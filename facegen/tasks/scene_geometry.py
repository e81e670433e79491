"""The texture paper's two-step geometry for composites: the face of each 2D generator image detected and aligned
as ``facegen predict`` does it for a photo (its landmark detector and crop), fitted by a fitting schedule (pose
and shape on the landmarks, then the photometric stage), and drawn back into the image at the image's own
resolution through the crop's intrinsics (:func:`~facegen.geometry.camera.photo_intrinsics`: exact, no
resampling). An image where no face is found keeps the encoder's code on the whole image, refined by the
schedule's photometric stage with the landmark term off, and is counted (:attr:`SceneGeometry.detected`)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from facegen.data.batch import FaceBatch
from facegen.data.detection.face import DetectedFace, LandmarkDetector, landmark_bbox
from facegen.data.prepare import CropOptions, CroppedFace, crop_face
from facegen.decoder import FaceCode
from facegen.fitting import FitSchedule
from facegen.fitting.landmark_model import LandmarkModel
from facegen.fitting.plausibility import face_size
from facegen.geometry.camera import photo_intrinsics
from facegen.tasks.conditioning import fit_unlabelled
from facegen.tasks.mofa import MoFA


class SceneGeometry(NamedTuple):
    """The fitted geometry of B 2D images of side R.

    Attributes:
        image: (B, 3, S, S) in [0, 1], what each face was fitted in: the aligned crop of a detected face, else
            the whole image resized to the MoFA's crop size S.
        code: the fitted codes (in the frame of ``image``).
        native_K: (B, 3, 3) intrinsics that draw each fitted face into its image at side R.
        detected: (B,) bool, where a face was detected (and the landmark stages fitted it).
        landmark_error: (B,) mean distance of the fitted 68 points (2D convention) to the detected ones over
            sqrt(w·h) of the detected points' box (box NME); NaN where no face was detected.
    """

    image: Tensor
    code: FaceCode
    native_K: Tensor
    detected: Tensor
    landmark_error: Tensor


def resize_transform(source: int, target: int) -> np.ndarray:
    """(2, 3) photo -> crop pixels of a ``source``² image resized to ``target``² (pixel centres kept)."""
    scale = target / source
    return np.array([[scale, 0.0, 0.5 * scale - 0.5], [0.0, scale, 0.5 * scale - 0.5]])


def largest_face(faces: list[DetectedFace]) -> DetectedFace | None:
    """The face with the largest landmark box, or None."""

    def area(face: DetectedFace) -> float:
        x0, y0, x1, y1 = landmark_bbox(face.landmarks)
        return (x1 - x0) * (y1 - y0)

    return max(faces, key=area, default=None)


def crop_scenes(mofa: MoFA, detector: LandmarkDetector, native: Tensor) -> list[CroppedFace | None]:
    """The largest face ``detector`` finds in each 2D image ``native`` (B, 3, R, R) in [0, 1], aligned and
    cropped as the photo path crops for ``mofa`` (its crop size and framing), or None where it finds none."""
    spec = mofa.input_spec
    options = CropOptions(size=spec.image_size, fill=spec.fill)
    pixels = (native.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    crops = []
    for image in pixels:
        face = largest_face(detector.detect(image))
        crops.append(None if face is None else crop_face(image, face, options))
    return crops


@torch.no_grad()
def fit_scene_geometry(
    mofa: MoFA, crops: list[CroppedFace | None], native: Tensor, resized: Tensor, schedule: FitSchedule
) -> SceneGeometry:
    """Two-step geometry (module docstring) of the 2D images ``native`` (B, 3, R, R) in [0, 1] whose faces
    :func:`crop_scenes` found (``crops``); ``resized``: the same images at the MoFA's crop size (B, 3, S, S),
    fitted where no face was found."""
    found = [index for index, crop in enumerate(crops) if crop is not None]
    detected = torch.zeros(len(crops), dtype=torch.bool)
    detected[found] = True
    transforms = [
        resize_transform(native.shape[-1], resized.shape[-1]) if crop is None else crop.transform
        for crop in crops
    ]
    code = mofa(resized).upcast()
    missing = [index for index, crop in enumerate(crops) if crop is None]
    if missing and schedule.photometric.steps:
        refined = fit_unlabelled(mofa, resized[missing], code.take(missing), schedule.photometric)
        code = code.put(missing, refined)
    image = resized.clone()
    error = torch.full((len(crops),), float("nan"))
    if found:
        batch = _crop_batch([crops[index] for index in found], resized)
        start = mofa(batch.image).upcast()
        fitted = mofa.fitted(batch, start, schedule).code if schedule.active else start
        fitted = fitted._replace(expression=mofa.decoder.model.clip_expression(fitted.expression))
        code, image[found] = code.put(found, fitted), batch.image
        error[found] = _landmark_error(mofa, fitted, batch).cpu()
    # every written code's blendshape weights in [0, 1], the encoder's of faces not found too
    code = code._replace(expression=mofa.decoder.model.clip_expression(code.expression))
    K = mofa.decoder.intrinsics.expand(len(crops), 3, 3)  # the crop camera's (B, 3, 3)
    native_K = photo_intrinsics(K, torch.from_numpy(np.stack(transforms)).to(K))
    return SceneGeometry(image, code, native_K, detected.to(native.device), error.to(native.device))


def _crop_batch(faces: list[CroppedFace], like: Tensor) -> FaceBatch:
    """A :class:`FaceBatch` of the cropped faces, on ``like``'s device and dtype."""
    image = torch.from_numpy(np.stack([face.crop for face in faces])).permute(0, 3, 1, 2).to(like) / 255
    masks = [
        face.mask if face.mask is not None else np.full(face.crop.shape[:2], 255, np.uint8) for face in faces
    ]
    confidence = [
        face.confidence if face.confidence is not None else np.ones(len(face.landmarks), np.float32)
        for face in faces
    ]
    return FaceBatch(
        image=image,
        landmarks=torch.from_numpy(np.stack([face.landmarks for face in faces])).to(like),
        mask=torch.from_numpy(np.stack(masks))[:, None].to(like) / 255,
        key=[f"scene-{index}" for index in range(len(faces))],
        meta=[{"transform": face.transform.tolist()} for face in faces],
        confidence=torch.from_numpy(np.stack(confidence)).to(like),
    )


def _landmark_error(mofa: MoFA, code: FaceCode, batch: FaceBatch) -> Tensor:
    """(B,) box NME of the fitted 68 points (2D convention, the jaw on the outline) against ``batch``'s."""
    decoded = mofa.decoder(code)
    contour = LandmarkModel(mofa.decoder, code.shape.shape[1], code.expression.shape[1])
    fitted = contour.silhouette_landmarks(code, decoded.pixels, batch.landmarks).to(batch.landmarks)
    return (fitted - batch.landmarks).norm(dim=-1).mean(-1) / face_size(batch.landmarks)
