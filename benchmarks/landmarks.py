"""Landmark accuracy of each detector backend on annotated photos: the shared annotated photos (default;
``../shared/assets`` or ``$FACEGEN_ASSETS``) or, with ``--wild``, the in-the-wild development set (AFW + HELEN,
86 faces, several per photo: each annotated face is matched to a detection by its box,
:mod:`facegen.evaluation.wild`). Per face: mean error in pixels, NME over the outer-eye-corner distance
(``nme_io``) and over sqrt(w·h) of the annotation's box (``nme_box``, as AFLW2000-3D reports it); per backend the
means overall and per yaw bin (wild set), the faces not found and those over 10 % NME_io, and seconds per photo.
One JSON line per face and backend, then one summary per backend. Backends that cannot start (not installed,
no weights) are reported as skipped.

dlib's predictor was trained on 300-W, which holds the wild set's photos: its numbers there are optimistic.

    python benchmarks/landmarks.py                     # dlib, litert, mediapipe and face-alignment
    python benchmarks/landmarks.py --backends dlib litert --wild ../shared/assets/photos/wild
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from facegen.data.detection.detectors import DetectorUnavailable, build_detector
from facegen.data.landmarks import read_pts
from facegen.data.photos import IMAGE_SUFFIXES, decode_image
from facegen.data.wild_set import AnnotatedFace, read_wild
from facegen.evaluation.aflw2000 import box_nme
from facegen.evaluation.wild import match, nme_io, summarise


def annotated_faces() -> list[AnnotatedFace]:
    """The shared annotated photos, one face each (no pose table: yaw unknown, NaN)."""
    root = Path(os.environ.get("FACEGEN_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))
    folder = root / "photos" / "annotated"
    if not folder.is_dir():
        raise SystemExit(f"no annotated photos at {folder}: set FACEGEN_ASSETS")
    photos = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".pts").is_file()
    )
    return [AnnotatedFace(p.stem, p, read_pts(p.with_suffix(".pts")), float("nan")) for p in photos]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["dlib", "litert", "mediapipe", "face-alignment"])
    parser.add_argument("--wild", type=Path, default=None, help="the wild development set's folder")
    args = parser.parse_args()
    faces = read_wild(args.wild) if args.wild else annotated_faces()
    by_photo: dict[Path, list[AnnotatedFace]] = defaultdict(list)
    for face in faces:
        by_photo[face.photo].append(face)
    for backend in args.backends:
        try:
            detector = build_detector(backend)
        except DetectorUnavailable as error:
            print(json.dumps({"backend": backend, "skipped": str(error).splitlines()[0]}))
            continue
        rows, seconds = [], []
        for photo, annotated in by_photo.items():
            image = decode_image(photo.read_bytes(), photo.name)
            started = time.perf_counter()
            found = detector.detect(image)
            seconds.append(time.perf_counter() - started)
            for face in annotated:
                index = match([f.bbox for f in found], face.points)
                if index is None:
                    print(json.dumps({"backend": backend, "face": face.key, "found": False}))
                    continue
                points = found[index].landmarks
                row = {
                    "backend": backend,
                    "face": face.key,
                    "detector": found[index].detector,
                    "yaw": face.yaw,
                    "error_px": round(float(np.linalg.norm(points - face.points, axis=1).mean()), 2),
                    "nme_box": round(box_nme(points, face.points), 5),
                    "nme_io": round(nme_io(points, face.points), 5),
                }
                rows.append(row)
                print(json.dumps(row))
        summary = summarise(rows, len(faces))
        seconds_per_photo = round(float(np.mean(seconds)), 3)
        print(json.dumps({"backend": backend, "summary": summary, "seconds_per_photo": seconds_per_photo}))


if __name__ == "__main__":
    main()
