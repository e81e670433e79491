"""How well does the texture model's pose manipulation re-pose the 2D generator's faces?

Learns the pitch/yaw directions as ``TextureGAN`` ``mode: composite`` does (the MoFA's fits of ``--samples`` faces,
ridge regression on w), then re-poses ``--test`` other faces to target yaws and fits them again with the MoFA:
- how far yaw moves: the fitted yaw against the target (mean absolute error, the slope of fitted on target, and
  the spread of fitted yaws before and after);
- how much identity drifts: the distance between the MoFA's shape codes of a face before and after re-posing,
  as a share of the mean distance between two different faces' shape codes (0: the same person, 1: a stranger).
Prints one JSON line.

    python benchmarks/reposing.py --mofa runs/mofa/checkpoints/last.ckpt \\
        --generator runs/stylegan_synth/checkpoints/last.ckpt [--samples 512] [--test 128] [--max_yaw 0.8]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from facegen.nets.gan_import import read_gan
from facegen.nets.stylegan import Generator
from facegen.tasks import MoFA
from facegen.tasks.conditioning import MoFASource, load_mofa
from facegen.tasks.reposing import POSE_ANGLES, PoseAugment, PoseDirections, fit_scenes

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


def main(argv: list[str] | None = None) -> int:
    parser = scene_parser(__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512, help="faces that the directions are learnt from")
    parser.add_argument("--test", type=int, default=128, help="other faces re-posed and fitted again")
    parser.add_argument("--max_yaw", type=float, default=0.8, help="target yaws uniform in ±this (radians)")
    parser.add_argument("--ridge", type=float, default=PoseAugment.ridge)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    mofa, generator = scene_models(args)
    z_learn = torch.randn(args.samples, generator.z_dim)
    size = mofa.hparams.image_size
    w, code = fit_scenes(generator, mofa, size, z_learn, CHUNK)
    directions = PoseDirections(generator.w_dim)
    r2 = directions.fit(w, code.rotation[:, POSE_ANGLES], args.ridge)

    z_test = torch.randn(args.test, generator.z_dim)
    options = PoseAugment(max_yaw=args.max_yaw, max_pitch=0.0, flip=0.0)
    _, before = fit_scenes(generator, mofa, size, z_test, CHUNK)
    rng = torch.Generator().manual_seed(1)
    targets = directions.targets(args.test, options, torch.Generator().manual_seed(1))
    _, after = fit_scenes(generator, mofa, size, z_test, CHUNK, directions, options, rng)
    yaw_before, yaw_after, target = before.rotation[:, 1], after.rotation[:, 1], targets[:, 1]
    centred = target - target.mean()
    slope = float((centred * (yaw_after - yaw_after.mean())).sum() / centred.square().sum())
    shape_before, shape_after = before.shape, after.shape
    drift = (shape_after - shape_before).norm(dim=1).mean()
    strangers = (shape_before - shape_before.roll(1, 0)).norm(dim=1).mean()
    result = {
        "samples": args.samples,
        "test": args.test,
        "direction_r2": round(r2, 3),
        "yaw_std_before_deg": round(float(yaw_before.std().rad2deg()), 2),
        "yaw_std_after_deg": round(float(yaw_after.std().rad2deg()), 2),
        "target_yaw_std_deg": round(float(target.std().rad2deg()), 2),
        "yaw_error_deg": round(float((yaw_after - target).abs().mean().rad2deg()), 2),
        "yaw_slope": round(slope, 3),
        "identity_drift": round(float(drift / strangers), 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
