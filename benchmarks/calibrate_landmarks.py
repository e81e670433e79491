"""Re-choose a face model's landmark vertices for a 2D detector's convention and write them as a 68-index file.

Every face the detector finds in the photo folders is fitted with the config's schedule; each landmark of
:data:`facegen.fitting.landmark_calibration.RECHOSEN` (eyebrows, nose, eyes, mouth) then moves to the vertex near
its current one whose projection lies closest on average to the detector's point (:class:`VertexChoice`); with
``--rounds`` above 1 the faces are fitted again with the new vertices and the choice repeated. No annotation is
read (the landmark files beside the photos are ignored): the target is the detector's own points. Prints one JSON
line per round (faces, the mean detector-to-model distance over the face size at the round's vertices and at the
chosen ones) and writes the indices, with how they were made in the header, for
``facegen model convert ict --landmarks FILE`` (facegen's shipped ``ict_landmarks_2d.txt`` was made so):

    facegen model convert ict --source ../shared/assets/ict/ict_face_model.npz --region face --landmarks ict \\
        --out /tmp/ict-face-own.npz
    python benchmarks/calibrate_landmarks.py --config configs/photos_ict.yaml --model /tmp/ict-face-own.npz \\
        --photos ../shared/assets/photos/annotated ../shared/assets/photos/pseudo \\
        ../shared/assets/photos/unlabeled --out facegen/morphable/formats/ict_landmarks_2d.txt

Measure the result on photos that were not used here (e.g. the wild set with ``benchmarks/fitting.py --wild``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from fitting import build_model, photo_batches, read_configs, schedule  # benchmarks/fitting.py

from facegen.atomic import write_text_atomic
from facegen.fitting.landmark_calibration import RECHOSEN, VertexChoice

#: The outer eye corners of the iBUG 68 points: the default radius is a quarter of their distance.
OUTER_EYE_CORNERS = (36, 45)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", nargs="+", default=["configs/photos_ict.yaml"], help="MoFA configs")
    parser.add_argument("--model", default=None, help="face model (default: the config's)")
    parser.add_argument("--photos", nargs="+", required=True, help="folders of photos (no annotation needed)")
    parser.add_argument("--detector", default="auto", help="the landmark detector to calibrate for")
    parser.add_argument("--rounds", type=int, default=1, help="fit and re-choose this many times")
    parser.add_argument(
        "--radius",
        type=float,
        default=None,
        help="model units (default: a quarter of the eye-corner distance)",
    )
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--out", required=True, help="the 68-index text file to write")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        raise SystemExit(f"--rounds {args.rounds}: give 1 or more")
    args.checkpoint = None
    config = read_configs(args.config)
    model = build_model(args, config)
    options = schedule(config)
    face_model = model.decoder.model
    found = [
        b for folder in args.photos for b in photo_batches(model, folder, args.batch_size, args.detector)
    ]
    faces = sum(len(b) for b in found)
    if not faces:
        raise SystemExit(
            f"--photos {' '.join(args.photos)}: {args.detector} found no face; give other photos"
        )
    mean = face_model.mean
    radius = args.radius or 0.25 * float(
        (mean[face_model.landmark_indices[list(OUTER_EYE_CORNERS)]]).diff(dim=0).norm()
    )
    for round_ in range(args.rounds):
        start = face_model.landmark_indices.clone()
        choice = VertexChoice(mean, start, radius)
        for batch in found:
            with torch.no_grad():
                code = model(batch.image)
            code = model.fitted(batch, code, options).code
            with torch.no_grad():
                choice.add(model.decoder(code).pixels, batch.landmarks, batch.confidence)
        chosen = choice.indices()
        face_model.landmark_indices.copy_(chosen)
        report = {
            "round": round_ + 1,
            "faces": faces,
            "distance_before": round(choice.mean_distance(start), 5),
            "distance_after": round(choice.mean_distance(chosen), 5),
            "moved": int((chosen != start).sum()),
            "moved_mean": round(float((mean[chosen] - mean[start]).norm(dim=-1).mean()), 4),
        }
        print(json.dumps(report), flush=True)
    header = [
        f"facegen landmark vertices of {face_model.name} ({face_model.num_vertices} vertices, "
        f"{face_model.units}):",
        f"points {RECHOSEN[0]}-{RECHOSEN[-1]} re-chosen within {radius:.3g} {face_model.units} for the "
        f"{args.detector} detector, {args.rounds} round(s) over {faces} faces of: {' '.join(args.photos)}",
        "by benchmarks/calibrate_landmarks.py (no annotation used); the other points as given.",
    ]
    text = "".join(f"# {line}\n" for line in header) + "\n".join(map(str, chosen.tolist())) + "\n"
    write_text_atomic(Path(args.out), text)
    print(json.dumps({"wrote": args.out, "indices": np.asarray(chosen).tolist()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
