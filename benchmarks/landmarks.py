"""Landmark accuracy of each detector backend on the shared annotated photos (``../shared/assets`` or
``$FACEGEN_ASSETS``): mean error in pixels, NME over the outer-eye-corner distance and over sqrt(w·h) of the
annotation's box (as AFLW2000-3D reports it), seconds per photo; one JSON line per photo and backend, then a mean
per backend. Backends that cannot start (not installed, no weights) are reported as skipped. Example:

    python benchmarks/landmarks.py                     # dlib, litert, mediapipe and face-alignment
    python benchmarks/landmarks.py --backends litert
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from facegen.data.detectors import DetectorUnavailable, build_detector
from facegen.data.landmarks import read_pts
from facegen.data.photos import IMAGE_SUFFIXES, decode_image


def annotated_photos() -> list[Path]:
    root = Path(os.environ.get("FACEGEN_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))
    folder = root / "photos" / "annotated"
    if not folder.is_dir():
        raise SystemExit(f"no annotated photos at {folder}: set FACEGEN_ASSETS")
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".pts").is_file()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["dlib", "litert", "mediapipe", "face-alignment"])
    args = parser.parse_args()
    photos = annotated_photos()
    for backend in args.backends:
        try:
            detector = build_detector(backend)
        except DetectorUnavailable as error:
            print(json.dumps({"backend": backend, "skipped": str(error).splitlines()[0]}))
            continue
        errors, box_errors, seconds = [], [], []
        for photo in photos:
            truth = read_pts(photo.with_suffix(".pts"))
            image = decode_image(photo.read_bytes(), photo.name)
            started = time.perf_counter()
            faces = detector.detect(image)
            seconds.append(time.perf_counter() - started)
            if not faces:
                print(json.dumps({"backend": backend, "photo": photo.name, "found": 0}))
                continue
            distance = min(
                np.linalg.norm(f.landmarks - truth, axis=1).mean() for f in faces
            )  # the right face
            nme = distance / np.linalg.norm(truth[36] - truth[45])
            width, height = np.ptp(truth, axis=0)
            box_nme = distance / math.sqrt(width * height)
            errors.append(nme)
            box_errors.append(box_nme)
            print(
                json.dumps(
                    {
                        "backend": backend,
                        "photo": photo.name,
                        "found": len(faces),
                        "error_px": round(float(distance), 2),
                        "nme": round(float(nme), 4),
                        "box_nme": round(float(box_nme), 4),
                        "seconds": round(seconds[-1], 3),
                    }
                )
            )
        if errors:
            print(
                json.dumps(
                    {
                        "backend": backend,
                        "photos": len(errors),
                        "mean_nme": round(float(np.mean(errors)), 4),
                        "mean_box_nme": round(float(np.mean(box_errors)), 4),
                        "seconds_per_photo": round(float(np.mean(seconds)), 3),
                    }
                )
            )


if __name__ == "__main__":
    main()
