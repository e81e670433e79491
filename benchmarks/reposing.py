"""How well does the texture model's pose manipulation re-pose the 2D generator's faces?

Learns the pitch/yaw directions as ``TextureGAN`` ``mode: composite`` does (the MoFA's fits of ``--samples`` faces,
ridge regression on w), then re-poses ``--test`` other faces to target yaws, once per number of ``--feedback``
corrections (0: the linear step alone; n: n closed-loop corrections by the MoFA's fitted pose,
``model.pose.feedback``), and fits them again with the MoFA:
- how far yaw moves: the fitted yaw against the target (mean absolute error, the slope of fitted on target, and
  the spread of fitted yaws before and after);
- how much identity drifts: dlib's face descriptor (``--identity dlib``, :mod:`facegen.data.detection.dlib_identity`)
  of each face before and after re-posing: mean cosine similarity and Euclidean distance, the share of faces
  dlib calls the same person (distance < 0.6), and the same between two different faces (strangers) for scale;
  and the distance between the MoFA's shape codes as a share of that between strangers (0: the same, 1: a
  stranger);
- seconds per face of the re-posing (synthesis, and the MoFA's fits with feedback).
Prints one JSON line per number of corrections.

    python benchmarks/reposing.py --mofa runs/mofa/checkpoints/last.ckpt \\
        --generator runs/stylegan_synth/checkpoints/last.ckpt [--samples 2048] [--ridge 10] [--test 128] \\
        [--max_yaw 0.8] [--feedback 0 1 2] [--identity dlib|none]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from facegen.data.detection.dlib_identity import SAME_PERSON, DlibIdentity, ModelMissing, compare
from facegen.decoder import FaceCode
from facegen.nets.gan_import import read_gan
from facegen.nets.stylegan import Generator
from facegen.tasks import MoFA
from facegen.tasks.conditioning import MoFASource, load_mofa
from facegen.tasks.reposing import POSE_ANGLES, PoseAugment, PoseDirections, fit_scenes, pose_of, render_scene

#: Faces per MoFA call.
CHUNK = 64


def scene_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of the benchmarks on the 2D generator's faces: ``--mofa`` and ``--generator``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mofa", required=True, help="MoFA checkpoint")
    parser.add_argument(
        "--generator", required=True, help="2D StyleGAN2 file (FaceStyleGAN checkpoint, GAN file)"
    )
    return parser


def scene_models(args: argparse.Namespace) -> tuple[MoFA, Generator]:
    """The MoFA (eval mode) and the 2D generator (its EMA weights) of ``args``."""
    return load_mofa(MoFASource(args.mofa), None).eval(), read_gan(args.generator).build_generator("G_ema")


@torch.no_grad()
def reposed(
    generator: Generator,
    mofa: MoFA,
    z: torch.Tensor,
    directions: PoseDirections | None = None,
    options: PoseAugment | None = None,
    seed: int = 1,
) -> tuple[torch.Tensor, FaceCode]:
    """The 2D images of ``z`` at their own resolution (B, 3, R, R), re-posed when ``directions`` and ``options``
    are given (targets drawn from ``seed``), and the MoFA's codes of them."""
    rng = torch.Generator().manual_seed(seed)
    size, images, codes = mofa.hparams.image_size, [], []
    for start in range(0, len(z), CHUNK):
        scene = render_scene(
            generator, z[start : start + CHUNK], size, directions, options, "const", rng, pose_of(mofa)
        )
        images.append(scene.native)
        codes.append(mofa(scene.image))
    return torch.cat(images), FaceCode(*(torch.cat(parts) for parts in zip(*codes, strict=True)))


def descriptors(identity: DlibIdentity, images: torch.Tensor) -> np.ndarray:
    """(B, 128) dlib descriptors of ``images`` (B, 3, R, R) in [0, 1]."""
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.stack([identity.descriptor(image) for image in pixels])


def similarity(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Mean cosine similarity, mean distance and share of the same person (dlib's threshold) of paired
    descriptors (B, 128)."""
    cosine, distance = compare(first, second)
    return {
        "cosine": round(float(cosine.mean()), 4),
        "distance": round(float(distance.mean()), 4),
        "same_person": round(float((distance < SAME_PERSON).mean()), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = scene_parser(__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="faces that the directions are learnt from")
    parser.add_argument("--test", type=int, default=128, help="other faces re-posed and fitted again")
    parser.add_argument("--max_yaw", type=float, default=0.8, help="target yaws uniform in ±this (radians)")
    parser.add_argument("--ridge", type=float, default=PoseAugment.ridge)
    parser.add_argument("--feedback", type=int, nargs="+", default=[0], help="closed-loop corrections")
    parser.add_argument("--identity", choices=("dlib", "none"), default="dlib")
    args = parser.parse_args(argv)
    if args.test < 2 or args.samples < 8 or min(args.feedback) < 0:
        raise SystemExit("--test must be at least 2, --samples at least 8 and --feedback >= 0")
    try:
        identity = DlibIdentity() if args.identity == "dlib" else None
    except ModelMissing as error:
        raise SystemExit(f"--identity dlib: {error}; or give --identity none") from None

    torch.manual_seed(0)
    mofa, generator = scene_models(args)
    z_learn = torch.randn(args.samples, generator.z_dim)
    w, code = fit_scenes(generator, mofa, mofa.hparams.image_size, z_learn, CHUNK)
    directions = PoseDirections(generator.w_dim)
    r2 = directions.fit(w, code.rotation[:, POSE_ANGLES], args.ridge)

    z_test = torch.randn(args.test, generator.z_dim)
    images_before, before = reposed(generator, mofa, z_test)
    base = descriptors(identity, images_before) if identity is not None else None
    yaw_before, shape_before = before.rotation[:, 1], before.shape
    strangers = (shape_before - shape_before.roll(1, 0)).norm(dim=1).mean()
    for feedback in args.feedback:
        options = PoseAugment(max_yaw=args.max_yaw, max_pitch=0.0, flip=0.0, feedback=feedback)
        target = directions.targets(args.test, options, torch.Generator().manual_seed(1))[:, 1]
        started = time.perf_counter()
        images_after, after = reposed(generator, mofa, z_test, directions, options)
        seconds = time.perf_counter() - started
        yaw_after = after.rotation[:, 1]
        centred = target - target.mean()
        slope = float((centred * (yaw_after - yaw_after.mean())).sum() / centred.square().sum())
        drift = (after.shape - shape_before).norm(dim=1).mean()
        result = {
            "feedback": feedback,
            "samples": args.samples,
            "ridge": args.ridge,
            "test": args.test,
            "direction_r2": round(r2, 3),
            "yaw_std_before_deg": round(float(yaw_before.std().rad2deg()), 2),
            "yaw_std_after_deg": round(float(yaw_after.std().rad2deg()), 2),
            "target_yaw_std_deg": round(float(target.std().rad2deg()), 2),
            "yaw_error_deg": round(float((yaw_after - target).abs().mean().rad2deg()), 2),
            "yaw_slope": round(slope, 3),
            "shape_drift": round(float(drift / strangers), 3),
            "seconds_per_face": round(seconds / args.test, 4),
        }
        if identity is not None:
            result["identity"] = similarity(base, descriptors(identity, images_after))
            result["identity_strangers"] = similarity(base, np.roll(base, 1, axis=0))
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
