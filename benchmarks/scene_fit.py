"""What does ``TextureGAN``'s ``scene_fit`` buy? The texture model (``mode: composite``) composites its textures on
the MoFA's fit of each 2D generator image; these images have no landmarks, so ``scene_fit`` fits the
encoder's code with Adam on MoFA's objective with the landmark term off.

For ``--faces`` images of the 2D generator (constant noise, not re-posed), and for each number of ``--steps``
(0: the encoder alone): the mean absolute colour error of the MoFA's render against the image over the pixels the
face covers (L1, colours in [0, 1]), the share of the image the face covers, the fitting objective, and the
seconds per face. Prints one JSON line per number of steps.

With ``--detector`` (``model.scene_detector``: the texture paper's two-step geometry,
:mod:`facegen.tasks.scene_geometry`), one more line for the ``--fit`` schedule on the same images: the share of
images with a face detected, the box NME of the fitted 68 points (2D convention) against the detected ones on
those faces (mean, median, and of the encoder's code before fitting), L1 and coverage in the crops the faces
were fitted in, and seconds per face (detection included).

    python benchmarks/scene_fit.py --mofa runs/mofa/checkpoints/last.ckpt \\
        --generator runs/stylegan_synth/checkpoints/last.ckpt [--faces 64] [--steps 0 10 30 100] \\
        [--detector auto --fit configs/fit/photos.yaml]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from reposing import scene_models, scene_parser  # benchmarks/reposing.py

from facegen.data.detection.detectors import DETECTORS, lazy_detector
from facegen.decoder.code import PARTS
from facegen.errors import ConfigError
from facegen.fitting import FitSchedule, PhotometricStage
from facegen.tasks.conditioning import fit_unlabelled
from facegen.tasks.reposing import render_scene
from facegen.tasks.scene_geometry import fit_scene_geometry


def read_schedule(path: str) -> FitSchedule:
    """The fitting schedule of a preset file (``configs/fit/*.yaml``), parsed as the CLI parses it."""
    if not Path(path).is_file():
        raise SystemExit(f"--fit {path} does not exist: give a schedule such as configs/fit/photos.yaml")
    parser = ArgumentParser()
    parser.add_argument("--fit", type=FitSchedule)
    return parser.instantiate(parser.parse_object({"fit": yaml.safe_load(Path(path).read_text())})).fit


def coverage_l1(mofa, code, image: torch.Tensor) -> tuple[float, float]:
    """Mean absolute colour error of ``code``'s render against ``image`` (B, 3, S, S) over the pixels the face
    covers, and the share of pixels covered."""
    with torch.no_grad():
        render = mofa.decoder.render(mofa.decoder(code), code.light)
    covered = render.mask
    l1 = ((render.image - image).abs().mean(1, keepdim=True) * covered).sum() / covered.sum().clamp(min=1)
    return float(l1), float(covered.mean())


def two_step(mofa, generator, z: torch.Tensor, detector: str, schedule: FitSchedule) -> dict:
    """The two-step geometry's measurements (module docstring) on the 2D images of ``z``."""
    with torch.no_grad():
        scene = render_scene(generator, z, mofa.hparams.image_size, noise_mode="const")
    try:
        backend = lazy_detector(detector, setting="--detector")
        started = time.perf_counter()
        fitted = fit_scene_geometry(mofa, backend, scene.native, scene.image, schedule)
        seconds = time.perf_counter() - started
        start = fit_scene_geometry(mofa, backend, scene.native, scene.image, FitSchedule())
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    found = fitted.detected
    error = fitted.landmark_error[found]
    l1, coverage = coverage_l1(mofa, fitted.code, fitted.image)
    return {
        "two_step": detector,
        "faces": len(z),
        "detected": round(float(found.float().mean()), 3),
        "landmark_nme_box": round(float(error.mean()), 4) if len(error) else None,
        "landmark_nme_box_median": round(float(error.median()), 4) if len(error) else None,
        "landmark_nme_box_encoder": round(float(start.landmark_error[found].mean()), 4)
        if len(error)
        else None,
        "l1": round(l1, 4),
        "coverage": round(coverage, 3),
        "seconds_per_face": round(seconds / len(z), 4),
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
    args = parser.parse_args(argv)
    schedule = read_schedule(args.fit) if args.detector else None

    torch.manual_seed(0)
    mofa, generator = scene_models(args)
    z = torch.randn(args.faces, generator.z_dim)
    with torch.no_grad():
        image = render_scene(generator, z, mofa.hparams.image_size, noise_mode="const").image
        encoded = mofa(image)
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
        print(json.dumps(two_step(mofa, generator, z, args.detector, schedule)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
