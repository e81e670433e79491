"""AFLW2000-3D (Zhu et al., "Face Alignment Across Large Poses: A 3D Solution", CVPR 2016): the 2,000 photos of
the official release, each with a ``.mat`` of ``pt3d_68`` (3, 68: x, y in 1-based pixels, z), ``Pose_Para``
(1, 7: pitch, yaw, roll in radians, translation, scale) and ``roi``; optionally the re-annotated 68 points that
landmark papers use (a ``.npy`` of (2000, 2 or 3, 68) or (2000, 68, 2 or 3)), whose rows follow a list of the
release's photo names: a text file given beside it, or, for a folder with the whole release, the sorted names.

The scores papers tabulate: the 68-point NME, mean point-to-point distance / sqrt(w·h) of the ground-truth
landmarks' bounding box, in 2D and in 3D (``pt3d_68``'s z, in the same pixel scale, against the predicted
landmarks' depth brought to photo pixels; both depths centred on their mean, as 3D alignment papers compare
them), in bins of absolute ground-truth yaw [0°, 30°), [30°, 60°), [60°, 90°] and the mean of
the three bins (the "balanced" mean); head-pose mean absolute error in degrees. A photo whose face was not found
counts as a failure and is listed (NME is over the faces found).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.errors import BadFileError, ConfigError

#: Where users obtain the data set (registration-free mirror of the official release).
SOURCE = "http://www.cbsr.ia.ac.cn/users/xiangyuzhu/projects/3DDFA/Database/AFLW2000-3D.zip"
#: Absolute-yaw bins in degrees: [low, high) except the last, which includes 90.
YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, 90.0))


@dataclass(frozen=True)
class AFLWItem:
    """One annotated photo: its path, ground-truth landmarks (68, 2) in 0-based pixels, their depth (68,) in the
    same pixel scale (larger towards the viewer, arbitrary origin) and pose in degrees (pitch, yaw, roll, as
    ``Pose_Para`` gives them)."""

    name: str
    photo: Path
    landmarks: np.ndarray
    depth: np.ndarray
    pose: tuple[float, float, float]


def read_aflw2000(
    root: str | Path,
    reannotated: str | Path | None = None,
    limit: int | None = None,
    names: str | Path | None = None,
) -> list[AFLWItem]:
    """The items of the release at ``root`` (the folder of ``image*.jpg`` + ``.mat``), sorted by name; the
    first ``limit`` when given. ``reannotated``: the corrected landmarks, replacing ``pt3d_68``'s x, y; its rows
    are matched to the photos by name through ``names`` (a text file of photo names, one per line, in the
    array's row order), or, without it, taken in sorted order when ``root`` holds exactly as many photos.

    Raises:
        ConfigError: ``root`` is not the release (naming what is missing and where it is obtained), or a subset
            of it with a re-annotation but no ``names``.
        BadFileError: a ``.mat`` without ``pt3d_68``/``Pose_Para``, a re-annotation of another size, or a
            photo that ``names`` does not list.
    """
    from scipy.io import loadmat

    root = Path(root)
    photos = sorted(root.glob("image*.jpg")) if root.is_dir() else []
    if not photos:
        raise ConfigError(
            f"--root {root}: no image*.jpg of AFLW2000-3D there; unpack the official release ({SOURCE}) and give "
            "its AFLW2000 folder"
        )
    items = []
    for photo in photos:
        mat = photo.with_suffix(".mat")
        if not mat.is_file():
            raise ConfigError(
                f"--root {root}: {mat.name} is missing beside {photo.name} (AFLW2000-3D: {SOURCE})"
            )
        try:
            data = loadmat(str(mat))
            points = np.asarray(data["pt3d_68"], dtype=np.float64)
            pose = np.asarray(data["Pose_Para"], dtype=np.float64).reshape(-1)[:3]
        except (KeyError, ValueError, TypeError, OSError) as error:
            raise BadFileError(
                f"{mat}: not an AFLW2000-3D annotation ({type(error).__name__}: {error})"
            ) from None
        if not np.isfinite(points[:2]).all():
            raise BadFileError(f"{mat}: pt3d_68 holds NaN or infinite points; replace the file from {SOURCE}")
        if points.shape != (3, 68) or pose.shape != (3,):
            raise BadFileError(
                f"{mat}: pt3d_68 is {points.shape} and Pose_Para {pose.shape}, expected (3, 68), (1, 7)"
            )
        pitch, yaw, roll = (math.degrees(a) for a in pose)
        items.append(AFLWItem(photo.stem, photo, points[:2].T - 1.0, points[2].copy(), (pitch, yaw, roll)))
    if reannotated is not None:
        rows = _reannotated_rows(Path(reannotated), [item.photo.name for item in items], names)
        items = [
            AFLWItem(i.name, i.photo, row[:, :2], row[:, 2] if row.shape[1] == 3 else i.depth, i.pose)
            for i, row in zip(items, rows, strict=True)
        ]
    return items[:limit] if limit else items


def _reannotated_rows(path: Path, photos: list[str], names: str | Path | None) -> list[np.ndarray]:
    """The re-annotated (68, 2|3) points of each of ``photos`` (file names): rows matched by ``names``, else
    the array's rows in order when there is one per photo."""
    if names is None:
        points = _reannotated(path, None)
        if len(points) != len(photos):
            raise ConfigError(
                f"--reannotated {path}: {len(points)} rows but --root holds {len(photos)} photos; give "
                "--reannotated_names (the photo names its rows follow, one per line) to score a subset"
            )
        return list(points)
    names = Path(names)
    if not names.is_file():
        raise ConfigError(f"--reannotated_names {names} does not exist; give the text file of photo names")
    listed = [Path(line.strip()).name for line in names.read_text().splitlines() if line.strip()]
    listed = [name if name.endswith(".jpg") else f"{name}.jpg" for name in listed]
    if len(set(listed)) != len(listed):
        raise BadFileError(f"{names}: a photo name is listed twice")
    points, row = _reannotated(path, len(listed)), dict(zip(listed, range(len(listed)), strict=True))
    unlisted = [photo for photo in photos if photo not in row]
    if unlisted:
        raise BadFileError(f"{names}: {unlisted[0]} (and {len(unlisted) - 1} more) of --root is not listed")
    return [points[row[photo]] for photo in photos]


def _reannotated(path: Path, count: int | None) -> np.ndarray:
    """The (N, 68, 2|3) points of the re-annotation ``path``, 0-based; ``count``: the rows it must have."""
    if not path.is_file():
        raise ConfigError(f"--reannotated {path} does not exist; give the re-annotated 68-point .npy")
    try:
        points = np.load(path, allow_pickle=False)
        if not isinstance(points, np.ndarray):  # an .npz archive of arrays
            points.close()
            raise TypeError("an .npz archive")
        points = np.asarray(points, dtype=np.float64)
    except (ValueError, TypeError, OSError) as error:
        raise BadFileError(
            f"{path}: not a numeric .npy array ({error}); give the re-annotated 68-point .npy"
        ) from None
    if points.ndim == 3 and points.shape[1] in (2, 3) and points.shape[2] == 68:
        points = points.transpose(0, 2, 1)
    rows = points.shape[0] if count is None and points.ndim == 3 else count
    if points.ndim != 3 or points.shape[0] != rows or points.shape[1] != 68 or points.shape[2] not in (2, 3):
        raise BadFileError(f"{path}: shape {points.shape}; expected ({rows}, 68, 2|3) or ({rows}, 2|3, 68)")
    points = points.copy()
    points[..., :2] -= 1.0  # 1-based pixels like pt3d_68
    return points


def box_nme(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance between ``predicted`` and ``truth`` (68, 2) over sqrt(w·h) of ``truth``'s bounding box."""
    width, height = np.ptp(truth, axis=0)
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / math.sqrt(max(width * height, 1e-12)))


def box_nme_3d(predicted: np.ndarray, truth: np.ndarray) -> float:
    """:func:`box_nme` of (68, 3) points (x, y in pixels, depth in the same scale): depths are centred on their
    mean first (their origins are arbitrary); normalised by the 2D box of ``truth``'s x, y."""
    predicted, truth = np.array(predicted, dtype=np.float64), np.array(truth, dtype=np.float64)
    predicted[:, 2] -= predicted[:, 2].mean()
    truth[:, 2] -= truth[:, 2].mean()
    width, height = np.ptp(truth[:, :2], axis=0)
    return float(np.linalg.norm(predicted - truth, axis=1).mean() / math.sqrt(max(width * height, 1e-12)))


def photo_depth(record: dict) -> np.ndarray | None:
    """Depth (68,) of a predicted face's landmarks in original-photo pixels, larger towards the viewer (as
    ``pt3d_68``'s z), from a ``code.json`` record: the camera-frame landmark depth Z scaled by the crop's focal
    length over the landmarks' mean depth (the perspective camera's local pixel scale) and by the crop-to-photo
    scale. None when the record lacks the 3D landmarks, intrinsics or crop transform."""
    try:
        points = np.asarray(record["landmarks_3d_camera"], dtype=np.float64)
        focal = float(np.asarray(record["intrinsics_crop"], dtype=np.float64)[0, 0])
        affine = np.asarray(record["crop_from_photo"], dtype=np.float64)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if points.shape != (68, 3) or affine.shape != (2, 3):
        return None
    crop_per_photo_px = math.sqrt(abs(float(np.linalg.det(affine[:, :2]))))
    mean_depth = float(points[:, 2].mean())
    if crop_per_photo_px <= 0 or mean_depth <= 0:
        return None
    return -(points[:, 2] - mean_depth) * focal / mean_depth / crop_per_photo_px


def yaw_bin(yaw_degrees: float) -> int:
    """Index into :data:`YAW_BINS` of an absolute yaw (beyond 90°: the last bin)."""
    value = abs(yaw_degrees)
    return next((i for i, (_, high) in enumerate(YAW_BINS) if value < high), len(YAW_BINS) - 1)


def pose_errors(
    predicted: tuple[float, float, float], truth: tuple[float, float, float]
) -> tuple[float, ...]:
    """Absolute (pitch, yaw, roll) errors in degrees, each wrapped into [0, 180]."""
    return tuple(abs((p - t + 180.0) % 360.0 - 180.0) for p, t in zip(predicted, truth, strict=True))


def summarise(results: list[dict], failures: list[dict]) -> dict:
    """Papers' table of per-item ``results`` (``nme``, optional ``nme_3d``, ``yaw_gt``, ``pose_error``): each NME
    per yaw bin, their mean, overall (the 3D ones over the faces that have one); pose MAE per angle and mean;
    counts."""
    summary: dict = {"items": len(results) + len(failures), "found": len(results), "failures": len(failures)}
    for index, (low, high) in enumerate(YAW_BINS):
        summary[f"count_{int(low)}_{int(high)}"] = sum(yaw_bin(r["yaw_gt"]) == index for r in results)
    for metric in ("nme", "nme_3d"):
        scored = [r for r in results if r.get(metric) is not None]
        bins = []
        for index, (low, high) in enumerate(YAW_BINS):
            values = [r[metric] for r in scored if yaw_bin(r["yaw_gt"]) == index]
            bins.append(float(np.mean(values)) if values else None)
            summary[f"{metric}_{int(low)}_{int(high)}"] = bins[-1]
        present = [b for b in bins if b is not None]
        summary[f"{metric}_balanced"] = float(np.mean(present)) if present else None
        summary[metric] = float(np.mean([r[metric] for r in scored])) if scored else None
    if results:
        errors = np.array([r["pose_error"] for r in results])
        for column, name in enumerate(("pitch", "yaw", "roll")):
            summary[f"mae_{name}"] = float(errors[:, column].mean())
        summary["mae_pose"] = float(errors.mean())
    return summary


def head_pose_degrees(camera_from_model: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees of a model -> OpenCV-camera rotation (3, 3), in AFLW2000-3D's convention:
    ``R = Rx(pitch) Ry(yaw) Rz(roll)`` in a camera whose y axis points up and z axis towards the viewer (the
    face models' own axes; a frontal face is (0, 0, 0))."""
    rotation = np.diag([1.0, -1.0, -1.0]) @ np.asarray(camera_from_model, dtype=np.float64)
    yaw = math.asin(max(-1.0, min(1.0, rotation[0, 2])))
    pitch = math.atan2(-rotation[1, 2], rotation[2, 2])
    roll = math.atan2(-rotation[0, 1], rotation[0, 0])
    return math.degrees(pitch), math.degrees(yaw), math.degrees(roll)


def matched_face(faces: list[dict], truth: np.ndarray) -> dict | None:
    """Of ``faces`` (``code.json`` records of one photo), the one whose landmarks' centre is nearest the centre
    of ``truth`` (68, 2), if that is inside the ground-truth box; else None (the annotated face was missed)."""
    low, high = truth.min(0), truth.max(0)
    centre = (low + high) / 2
    best, distance = None, math.inf
    for face in faces:
        points = np.asarray(face["landmarks_photo_px"], dtype=np.float64)
        offset = float(np.linalg.norm(points.mean(0) - centre))
        inside = bool(np.all(points.mean(0) >= low) and np.all(points.mean(0) <= high))
        if inside and offset < distance:
            best, distance = face, offset
    return best
