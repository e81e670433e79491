"""The synthetic ground-truth benchmark of ``facegen evaluate synthetic``: a fixed, seeded set of faces of the
checkpoint's face model rendered as photos with settings that differ from training (wider field of view, larger
poses, stronger directional light, a looser framing), each with its ground-truth landmarks beside it (``.pts``) and
its code in ``truth.npz``; and the scores of what ``facegen predict`` wrote for them: vertex error after
similarity alignment over the model's face region (model units and mm), its ratio to the mean face's, landmark
NME by the ground-truth box, and the rotation error (geodesic angle) in the photo's camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facegen.atomic import atomic_file
from facegen.data.landmarks import write_pts
from facegen.data.synth import RandomSkinAlbedo, SynthOptions, sample_code, smooth_backgrounds
from facegen.decoder import FaceDecoder
from facegen.evaluation.aflw2000 import box_nme
from facegen.evaluation.geometry import vertex_error
from facegen.export.face_files import read_code_records
from facegen.export.files import write_png_atomic
from facegen.geometry.rotations import rotation_angle_between
from facegen.morphable.model import MorphableModel


@dataclass(frozen=True)
class SyntheticSettings:
    """The benchmark's faces: ``n`` of them from ``seed``, square photos of at least ``photo_size`` pixels and twice
    the model's crop size, field of view ``fov`` (degrees) and framing ``fill``, pose and light spreads as
    :class:`SynthOptions`."""

    n: int = 64
    seed: int = 20_261_122
    photo_size: int = 256
    fov: float = 20.0
    fill: float = 0.4
    options: SynthOptions = field(
        default_factory=lambda: SynthOptions(
            yaw=50.0, pitch=20.0, roll=15.0, directional=0.9, ambient=(0.4, 1.2)
        )
    )


def render_benchmark(model: MorphableModel, size: int, settings: SyntheticSettings, folder: Path) -> dict:
    """Write ``face_<i>.png`` + ``.pts`` and ``truth.npz`` (code parts (n, k), camera rotations (n, 3, 3),
    landmarks (n, 68, 2) in photo pixels) into ``folder``; returns the arrays of ``truth.npz``."""
    folder.mkdir(parents=True, exist_ok=True)
    side = max(2 * size, settings.photo_size)
    albedo = None if model.has_albedo else RandomSkinAlbedo(model)
    decoder = FaceDecoder(model, (side, side), settings.fov, settings.fill, albedo=albedo)
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.no_grad():
        code = sample_code(decoder.layout(), settings.n, settings.options, generator, model.expression_kind)
        decoded = decoder(code)
        background = smooth_backgrounds(settings.n, side, generator)
        images = decoder.render(decoded, code.light, background=background).image
    pixels = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    landmarks = decoded.landmarks.numpy().astype(np.float64)
    for i in range(settings.n):
        write_png_atomic(folder / f"face_{i:04d}.png", pixels[i])
        write_pts(folder / f"face_{i:04d}.pts", landmarks[i])
    truth = {part: value.numpy() for part, value in code.to_dict().items()}
    truth["camera_rotation"] = decoder.camera_pose(code)[0].numpy()
    truth["landmarks"] = landmarks
    with atomic_file(folder / "truth.npz") as handle:
        np.savez(handle, **truth)
    return truth


def _photo_rotation(record: dict) -> np.ndarray:
    """The predicted model -> camera rotation in the photo's camera: the crop's in-plane rotation undone."""
    rotation = np.asarray(record["camera_from_model"]["rotation"], dtype=np.float64)
    transform = record.get("crop_from_photo")
    if transform is None:
        return rotation
    linear = np.asarray(transform, dtype=np.float64)[:, :2]
    in_plane = linear / math.sqrt(abs(np.linalg.det(linear)))
    return np.block([[in_plane, np.zeros((2, 1))], [np.zeros((1, 2)), np.ones((1, 1))]]).T @ rotation


def score_synthetic(model: MorphableModel, truth: dict, predictions: Path) -> tuple[list[dict], list[dict]]:
    """Per-face results and failures of the predictions in ``predictions`` against ``truth``."""
    records = {stem: faces[0] for stem, faces in read_code_records(predictions).items()}
    region = model.mask("face") if "face" in model.mask_names else None
    mean_face = model.mean[None].double()
    results, failures = [], []
    for i in range(len(truth["shape"])):
        name = f"face_{i:04d}"
        record = records.get(name)
        if record is None:
            failures.append({"item": name, "reason": "no prediction"})
            continue
        expression = record["expression"]
        expression = list(expression.values()) if isinstance(expression, dict) else expression
        with torch.no_grad():
            predicted = model(
                shape=torch.tensor([record["shape"]]), expression=torch.tensor([expression])
            ).vertices.double()
            true = model(
                shape=torch.from_numpy(truth["shape"][i : i + 1]).float(),
                expression=torch.from_numpy(truth["expression"][i : i + 1]).float(),
            ).vertices.double()
        error = float(vertex_error(predicted, true, region, scale=True)[0])
        baseline = float(vertex_error(mean_face, true, region, scale=True)[0])
        angle = rotation_angle_between(
            torch.from_numpy(_photo_rotation(record)), torch.from_numpy(truth["camera_rotation"][i]).double()
        )
        results.append(
            {
                "item": name,
                "vertex_error": error,
                "vertex_error_mm": error * model.mm_per_unit,
                "vertex_error_mean_face": baseline,
                "vertex_error_ratio": error / max(baseline, 1e-12),
                "landmark_nme": box_nme(np.asarray(record["landmarks_photo_px"]), truth["landmarks"][i]),
                "rotation_error_deg": math.degrees(float(angle)),
            }
        )
    return results, failures


def summarise_synthetic(results: list[dict], failures: list[dict]) -> dict:
    """Means of the per-face results; the ratio is the mean error over the mean face's mean error."""
    summary: dict = {"items": len(results) + len(failures), "found": len(results), "failures": len(failures)}
    if results:
        for key in (
            "vertex_error",
            "vertex_error_mm",
            "vertex_error_mean_face",
            "landmark_nme",
            "rotation_error_deg",
        ):
            summary[key] = float(np.mean([r[key] for r in results]))
        summary["vertex_error_ratio"] = summary["vertex_error"] / max(
            summary["vertex_error_mean_face"], 1e-12
        )
    return summary
