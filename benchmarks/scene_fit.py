"""What does ``TextureGAN``'s ``scene_fit`` buy? The texture model (``mode: composite``) composites its textures on
the MoFA's fit of each 2D generator image; these images have no landmarks, so ``scene_fit`` fits the
encoder's code with Adam on MoFA's objective with the landmark term off.

For ``--faces`` images of the 2D generator (constant noise, not re-posed), and for each number of ``--steps``
(0: the encoder alone): the mean absolute colour error of the MoFA's render against the image over the pixels the
face covers (L1, colours in [0, 1]), the share of the image the face covers, the fitting objective, and the
seconds per face. Prints one JSON line per number of steps.

With ``--detector`` (``model.scene_detector``: the texture paper's two-step geometry,
:mod:`facegen.tasks.scene_geometry`), one more line for the ``--fit`` schedule on the same images (or, with
``--images FOLDER``, on the first ``--faces`` photos there, centre squares at ``--size``², standing in for a
generator of photo-like faces such as FFHQ's): the share of
images with a face detected, the box NME of the fitted 68 points (2D convention) against the detected ones on
those faces (mean, median, and of the encoder's code before fitting), L1 and coverage in the crops the faces
were fitted in, and seconds per face (detection included).

    python benchmarks/scene_fit.py --mofa runs/mofa/checkpoints/last.ckpt \\
        --generator runs/stylegan_synth/checkpoints/last.ckpt [--faces 64] [--steps 0 10 30 100] \\
        [--detector auto --fit configs/fit/photos.yaml [--images PHOTOS --size 256]]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from fitting import parse_schedule  # benchmarks/fitting.py
from reposing import scene_models, scene_parser  # benchmarks/reposing.py

from facegen.data.detection.detectors import DETECTORS, lazy_detector
from facegen.data.photos import IMAGE_SUFFIXES, read_photo
from facegen.decoder.code import PARTS
from facegen.errors import ConfigError
from facegen.fitting import FitSchedule, PhotometricStage
from facegen.tasks.conditioning import fit_unlabelled
from facegen.tasks.reposing import render_scene
from facegen.tasks.scene_geometry import crop_scenes, fit_scene_geometry


def read_schedule(path: str) -> FitSchedule:
    """The fitting schedule of a preset file (``configs/fit/*.yaml``)."""
    if not Path(path).is_file():
        raise SystemExit(f"--fit {path} does not exist: give a schedule such as configs/fit/photos.yaml")
    return parse_schedule(yaml.safe_load(Path(path).read_text()))


def coverage_l1(mofa, code, image: torch.Tensor) -> tuple[float, float]:
    """Mean absolute colour error of ``code``'s render against ``image`` (B, 3, S, S) over the pixels the face
    covers, and the share of pixels covered."""
    with torch.no_grad():
        render = mofa.decoder.render(mofa.decoder(code), code.light)
    covered = render.mask
    l1 = ((render.image - image).abs().mean(1, keepdim=True) * covered).sum() / covered.sum().clamp(min=1)
    return float(l1), float(covered.mean())


def folder_images(folder: str, count: int, size: int) -> torch.Tensor:
    """(B, 3, size, size) in [0, 1]: the centre squares of the first ``count`` photos of ``folder`` (sorted),
    resized to ``size``² (area averaging), standing in for a 2D generator's images."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not paths:
        raise SystemExit(f"--images {folder}: no photos there")
    squares = []
    for path in paths:
        image = read_photo(str(path))
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = image[top : top + side, left : left + side]
        squares.append(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA))
    return torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).float() / 255


def two_step(mofa, native: torch.Tensor, detector: str, schedule: FitSchedule) -> dict:
    """The two-step geometry's measurements (module docstring) on 2D images ``native`` (B, 3, R, R)."""
    size = mofa.hparams.image_size
    resized = F.interpolate(native, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    try:
        backend = lazy_detector(detector, setting="--detector")
        started = time.perf_counter()
        crops = crop_scenes(mofa, backend, native)
        fitted = fit_scene_geometry(mofa, crops, native, resized, schedule)
        seconds = time.perf_counter() - started
        start = fit_scene_geometry(mofa, crops, native, resized, FitSchedule())
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    found = fitted.detected
    error = fitted.landmark_error[found]
    l1, coverage = coverage_l1(mofa, fitted.code, fitted.image)
    return {
        "two_step": detector,
        "faces": len(native),
        "image_size": native.shape[-1],
        "detected": round(float(found.float().mean()), 3),
        "landmark_nme_box": round(float(error.mean()), 4) if len(error) else None,
        "landmark_nme_box_median": round(float(error.median()), 4) if len(error) else None,
        "landmark_nme_box_encoder": round(float(start.landmark_error[found].mean()), 4)
        if len(error)
        else None,
        "l1": round(l1, 4),
        "coverage": round(coverage, 3),
        "seconds_per_face": round(seconds / len(native), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = scene_parser(__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=64, help="generated images fitted (one batch)")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 10, 30, 100])
    parser.add_argument("--lr", type=float, default=PhotometricStage.lr)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--detector", choices=[d for d in DETECTORS if d != "files"], default=None)
    parser.add_argument(
        "--fit", default="configs/fit/photos.yaml", help="two-step schedule (with --detector)"
    )
    parser.add_argument(
        "--images", default=None, help="two-step on these photos (a folder) instead of the generator's images"
    )
    parser.add_argument("--size", type=int, default=None, help="their side (default: the generator's)")
    args = parser.parse_args(argv)
    schedule = read_schedule(args.fit) if args.detector else None

    torch.manual_seed(0)
    mofa, generator = scene_models(args)
    z = torch.randn(args.faces, generator.z_dim)
    with torch.no_grad():
        scene = render_scene(generator, z, mofa.hparams.image_size, noise_mode="const")
        image, encoded = scene.image, mofa(scene.image)
    if schedule is not None:  # the two-step geometry's images: photos given, else the same generated ones
        native = (
            folder_images(args.images, args.faces, args.size or generator.resolution)
            if args.images
            else scene.native
        )
    for steps in args.steps:
        stage = PhotometricStage(steps=steps, lr=args.lr, parts=tuple(args.parts))
        started = time.perf_counter()
        code = fit_unlabelled(mofa, image, encoded, stage) if steps else encoded
        seconds = time.perf_counter() - started
        l1, coverage = coverage_l1(mofa, code, image)
        result = {
            "steps": steps,
            "faces": args.faces,
            "parts": args.parts,
            "l1": round(l1, 4),
            "coverage": round(coverage, 3),
            "seconds_per_face": round(seconds / args.faces, 4),
            "weights": {**vars(mofa.fit_problem().weights), "landmark": 0.0},
        }
        print(json.dumps(result), flush=True)
    if schedule is not None:
        print(json.dumps(two_step(mofa, native, args.detector, schedule)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
