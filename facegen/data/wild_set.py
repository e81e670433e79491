"""A folder of in-the-wild photos with iBUG 68-point annotations and a pose table, as the shared development set
``photos/wild/`` lays it out (AFW and HELEN with the 300-W re-annotation): ``poses.csv`` maps each annotated
face (``pts``) to its photo (``image``) and gives its estimated ``yaw_deg``. Scored by
:mod:`facegen.evaluation.wild`."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegen.data.landmarks import read_pts
from facegen.errors import ConfigError


@dataclass(frozen=True)
class AnnotatedFace:
    """One annotated face: its photo, a unique ``key`` (from the annotation file), points (68, 2) in 0-based
    photo pixels, and the table's yaw estimate in degrees."""

    key: str
    photo: Path
    points: np.ndarray
    yaw: float


def read_wild(root: str | Path) -> list[AnnotatedFace]:
    """The annotated faces of the set at ``root`` (``poses.csv`` + photos + ``.pts``), in the table's order.

    Raises:
        ConfigError: ``root`` has no ``poses.csv``, or a row names a missing file.
    """
    root = Path(root)
    table = root / "poses.csv"
    if not table.is_file():
        raise ConfigError(f"{root}: no poses.csv; give the wild development set's folder (photos/wild)")
    faces = []
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            photo, pts = root / row["image"], root / row["pts"]
            if not photo.is_file() or not pts.is_file():
                raise ConfigError(f"{table}: {row['image']} or {row['pts']} is missing under {root}")
            key = str(Path(row["pts"]).with_suffix("")).replace("/", "_")
            faces.append(AnnotatedFace(key, photo, read_pts(pts), float(row["yaw_deg"])))
    return faces
