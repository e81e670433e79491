"""What does ``TextureGAN``'s ``scene_fit`` buy? The texture model (``mode: composite``) composites its textures on
the MoFA's fit of each 2D generator image; these images have no landmarks, so ``scene_fit`` fits the
encoder's code with Adam on MoFA's objective with the landmark term off.

For ``--faces`` images of the 2D generator (constant noise, not re-posed), and for each number of ``--steps``
(0: the encoder alone): the mean absolute colour error of the MoFA's render against the image over the pixels the
face covers (L1, colours in [0, 1]), the share of the image the face covers, the fitting objective, and the
seconds per face. Prints one JSON line per number of steps.

    python benchmarks/scene_fit.py --mofa runs/mofa/checkpoints/last.ckpt \\
        --generator runs/stylegan_synth/checkpoints/last.ckpt [--faces 64] [--steps 0 10 30 100]
"""

from __future__ import annotations

import json
import sys
import time

import torch
from reposing import scene_models, scene_parser  # benchmarks/reposing.py

from facegen.decoder.code import PARTS
from facegen.fitting import PhotometricStage
from facegen.tasks.conditioning import fit_unlabelled
from facegen.tasks.reposing import render_scene


def main(argv: list[str] | None = None) -> int:
    parser = scene_parser(__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=64, help="generated images fitted (one batch)")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 10, 30, 100])
    parser.add_argument("--lr", type=float, default=PhotometricStage.lr)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = parser.parse_args(argv)

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
        with torch.no_grad():
            render = mofa.decoder.render(mofa.decoder(code), code.light)
            covered = render.mask
            l1 = ((render.image - image).abs().mean(1, keepdim=True) * covered).sum() / covered.sum()
        result = {
            "steps": steps,
            "faces": args.faces,
            "parts": args.parts,
            "l1": round(float(l1), 4),
            "coverage": round(float(covered.mean()), 3),
            "seconds_per_face": round(seconds / args.faces, 4),
            "weights": {**vars(mofa.fit_problem().weights), "landmark": 0.0},
        }
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
