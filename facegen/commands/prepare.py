"""``facegen prepare``: turn photos into aligned, landmarked face crops in WebDataset shards."""

from __future__ import annotations

import json
import sys

from jsonargparse import ArgumentParser

from facegen.data.detection.detectors import Detector, DetectorUnavailable
from facegen.data.prepare import MaskKind
from facegen.errors import ConfigError

HELP = "detect, landmark, align and crop faces from photos into WebDataset shards"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="facegen prepare",
        description=HELP
        + ". Landmark files beside the photos (.pts, dlib XML) are used instead of detection. "
        "Rerun with the same options to resume: finished shards are kept.",
    )
    parser.add_argument("--input", type=str, required=True, help="folder, glob pattern or .tar of photos")
    parser.add_argument("--out", type=str, required=True, help="output folder for shards and manifest.json")
    parser.add_argument("--detector", type=Detector, default="face-alignment", help="landmark backend")
    parser.add_argument("--device", type=str, default="cpu", help="device of the detector network")
    parser.add_argument("--size", type=int, default=224, help="crop size in pixels")
    parser.add_argument("--fill", type=float, default=0.55, help="jaw width as a fraction of the crop width")
    parser.add_argument("--mask", type=MaskKind, default="face", help="face mask stored with each crop")
    parser.add_argument("--min-face-size", "--min_face_size", type=float, default=40.0, help="pixels")
    parser.add_argument("--max-faces", "--max_faces", type=int, default=8, help="faces kept per photo")
    parser.add_argument("--photos-per-shard", "--photos_per_shard", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=0, help="detector processes (0: in this process)")
    parser.add_argument(
        "--landmark-files", "--landmark_files", type=bool, default=True, help="use .pts / dlib XML side files"
    )
    parser.add_argument("--progress", type=bool, default=True, help="show a progress bar")
    parser.add_argument(
        "--part",
        type=str,
        default=None,
        help="I/N: prepare only part I (0-based) of N into the same --out, e.g. one SLURM array task each "
        "(--part $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); then run once without --part to write the manifest",
    )
    return parser


def parse_part(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N, or None."""
    if text is None:
        return None
    index, _, count = text.partition("/")
    try:
        part = int(index), int(count)
    except ValueError:
        part = (-1, 0)
    if not 0 <= part[0] < part[1]:
        raise ConfigError(f"--part must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return part


def run(argv: list[str]) -> int:
    from facegen.data.prepare import CropOptions, PrepareJob

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.photos_per_shard < 1:
        parser.error("--photos-per-shard must be at least 1")
    try:
        crop = CropOptions(args.size, args.fill, args.mask, args.min_face_size, args.max_faces)
    except ValueError as error:
        parser.error(str(error))
    job = PrepareJob(
        args.input,
        args.out,
        args.detector,
        args.device,
        crop,
        args.photos_per_shard,
        args.workers,
        args.landmark_files,
        args.progress,
        parse_part(args.part),
    )
    try:
        manifest = job.run()
    except (FileNotFoundError, FileExistsError, DetectorUnavailable) as error:
        print(f"facegen prepare: error: {error}", file=sys.stderr)
        return 2
    summary = {k: manifest[k] for k in ("photos", "faces", "reject_counts")}
    summary["shards"] = len(manifest["shards"])
    if job.part is not None:
        summary["part"] = args.part
    print(json.dumps(summary))
    return 0
