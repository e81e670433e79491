"""The NoW benchmark's glue for ``facegen evaluate now`` (the metric is :mod:`facegen.evaluation.now`): the
validation images of a download, the challenge's prediction layout written from ``facegen predict``'s
``code.json`` files, and the local score where the scans are present."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facegen.atomic import atomic_file, write_text_atomic
from facegen.data.keys import unique_stems
from facegen.errors import BadFileError, ConfigError
from facegen.evaluation.now import NOW_FROM_IBUG, read_pp, scan_to_mesh_errors
from facegen.export.face_files import read_code_records
from facegen.export.obj import obj_text, read_obj
from facegen.morphable.model import MorphableModel

#: Where the data set is obtained (registration).
SOURCE = "https://now.is.tue.mpg.de"
#: The list of validation images in a NoW download.
IMAGE_LIST = "imagepathsvalidation.txt"


@dataclass(frozen=True)
class NowItem:
    """One validation image: ``subject/challenge/IMG.jpg`` (``relative``), the photo, and a flat ``name`` unique
    in the list (see :func:`read_now`)."""

    relative: str
    photo: Path
    name: str

    @property
    def subject(self) -> str:
        return self.relative.split("/")[0]


def read_now(root: str | Path, limit: int | None = None) -> list[NowItem]:
    """The validation images listed in ``root``'s :data:`IMAGE_LIST` (the first ``limit``).

    Raises:
        ConfigError: the list or a listed photo is missing (naming it and where the data set is obtained).
    """
    root = Path(root)
    listing = root / IMAGE_LIST
    if not listing.is_file():
        raise ConfigError(f"--root {root}: no {IMAGE_LIST}; give the NoW download's folder ({SOURCE})")
    relatives = []
    for line in listing.read_text().split():
        relative = line.strip().lstrip("/")
        if ".." in Path(relative).parts:
            raise ConfigError(f"{listing}: the entry {line!r} leaves the data set's folder")
        photo = root / "iphone_pictures" / relative
        if not photo.is_file():
            raise ConfigError(
                f"--root {root}: {photo.relative_to(root)} is missing (listed in {IMAGE_LIST}; {SOURCE})"
            )
        if relative not in relatives:
            relatives.append(relative)
    if not relatives:
        raise ConfigError(f"{listing} lists no photos; give the NoW download's folder ({SOURCE})")
    names = unique_stems(relatives)  # a/b__c.jpg and a__b/c.jpg stay apart
    items = [
        NowItem(relative, root / "iphone_pictures" / relative, names[relative]) for relative in relatives
    ]
    return items[:limit] if limit else items


def neutral_mesh(model: MorphableModel, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """The neutral face of a ``code.json`` record (shape only, no expression, model space) and its 7 NoW
    landmarks (7, 3)."""
    with torch.no_grad():
        vertices = model(shape=torch.tensor([record["shape"]])).vertices[0].double().numpy()
    indices = model.landmark_indices.numpy()[list(NOW_FROM_IBUG)]
    return vertices, vertices[indices]


def write_challenge_layout(
    items: list[NowItem], predictions: Path, model: MorphableModel, out: Path
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[dict]]:
    """Write ``out/<subject>/<challenge>/IMG.obj`` and ``IMG.npy`` for every item with a prediction (the largest
    face of its photo); returns the meshes and landmarks by item and the failures."""
    faces_by_photo = read_code_records(predictions)
    meshes, failures = {}, []
    triangles = model.faces.numpy()
    for item in items:
        faces = faces_by_photo.get(item.name)
        if not faces:
            failures.append({"item": item.relative, "reason": "no face found"})
            continue
        largest = max(faces, key=lambda f: float(np.ptp(np.asarray(f["landmarks_photo_px"]), axis=0).prod()))
        vertices, landmarks = neutral_mesh(model, largest)
        target = out / item.relative.removesuffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target.with_suffix(".obj"), obj_text(vertices, triangles))
        with atomic_file(target.with_suffix(".npy")) as handle:
            np.save(handle, landmarks)
        meshes[item.relative] = (vertices, landmarks)
    return meshes, failures


def scan_of(root: Path, subject: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A subject's scan vertices (N, 3) and its 7 landmarks, when the download has them.

    Raises:
        BadFileError: naming the scan or landmark file that cannot be read.
    """
    scans = sorted((root / "scans" / subject).glob("*.obj"))
    points = sorted((root / "scans_lmks_onlypp" / subject).glob("*.pp"))
    if not scans or not points:
        return None
    try:
        vertices = np.asarray(read_obj(scans[0])["vertices"], dtype=np.float64)
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise BadFileError(f"{scans[0]}: not a readable .obj scan ({error})") from None
    if len(vertices) == 0 or not np.isfinite(vertices).all():
        raise BadFileError(f"{scans[0]}: a scan without finite vertices")
    return vertices, read_pp(points[0])


def read_scans(root: Path, items: list[NowItem]) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """:func:`scan_of` for every subject of ``items`` (read before anything is predicted, so a bad scan stops
    the benchmark at once)."""
    return {subject: scan_of(root, subject) for subject in sorted({item.subject for item in items})}


def score_now(
    scans: dict[str, tuple[np.ndarray, np.ndarray] | None],
    items: list[NowItem],
    meshes: dict[str, tuple[np.ndarray, np.ndarray]],
    model: MorphableModel,
) -> tuple[list[dict], list[np.ndarray], list[dict]]:
    """Per-image error statistics, every image's distances, and images without a scan (``scans``: from
    :func:`read_scans`)."""
    results, errors, missing = [], [], []
    triangles = model.faces.numpy()
    for item in items:
        if item.relative not in meshes:
            continue
        scan = scans[item.subject]
        if scan is None:
            missing.append({"item": item.relative, "reason": "no scan and landmarks for this subject"})
            continue
        vertices, landmarks = meshes[item.relative]
        distances = scan_to_mesh_errors(vertices, triangles, landmarks, *scan)
        errors.append(distances)
        results.append(
            {
                "item": item.relative,
                "median_mm": float(np.median(distances)),
                "mean_mm": float(distances.mean()),
                "std_mm": float(distances.std()),
            }
        )
    return results, errors, missing
