"""How much geometry MoFA's losses can recover on held-out synthetic faces, as vertex error after similarity
alignment relative to the mean face's (``vertex_error_ratio``, the quantity of issue 6's target):

- oracles: the ratio when shape (or expression) is exactly right and the rest is the mean;
- test-time refinement for each number of steps and prior weight, from the mean face (no trained encoder) and
  from the truth (where the loss's optimum lies: priors that are too strong pull the truth away);
- optionally a trained checkpoint's encoder, alone and refined.

Prints one JSON object per measurement. Example (the quickstart's validation shards, rendered when missing):

    python benchmarks/geometry.py --shards data/synth/builtin-128/val --faces 32 --steps 200 300 --priors 1e-3 1e-4
    python benchmarks/geometry.py --checkpoint runs/mofa/version_0/checkpoints/last.ckpt
    python benchmarks/geometry.py --landmark 2e-2 --albedo 1e-4 --priors 1e-4 --steps 300  # mofa.yaml's refine
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from facegen.data import FaceDataModule, SynthOptions
from facegen.data.synth import SynthJob
from facegen.tasks import LossWeights, MoFA, RefineOptions, refine_code


def held_out_batch(shards: Path, faces: int, size: int) -> dict:
    if not (shards / "manifest.json").is_file():
        SynthJob(
            "builtin", shards, faces, samples_per_shard=faces, seed=1, options=SynthOptions(size=size)
        ).run()
    module = FaceDataModule(val=str(shards), batch_size=faces, num_workers=0, image_size=size)
    module.setup("validate")
    return module.on_after_batch_transfer(next(iter(module.val_dataloader())), 0)


def ratios(model: MoFA, code, params: dict) -> dict:
    metrics = model._ground_truth_metrics(code, params)
    keep = (
        "vertex_error_ratio",
        "vertex_error_rigid_ratio",
        "rotation_error_deg",
        "shape_rmse",
        "expression_rmse",
    )
    return {k: round(float(v), 4) for k, v in metrics.items() if k in keep}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=Path, default=Path("data/synth/builtin-128/val"))
    parser.add_argument("--faces", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 300])
    parser.add_argument(
        "--priors", type=float, nargs="+", default=[1e-3, 1e-4], help="shape/expression weights"
    )
    parser.add_argument("--landmark", type=float, default=2e-3, help="landmark weight")
    parser.add_argument("--albedo", type=float, default=1e-3, help="albedo prior weight")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--checkpoint", help="also measure this MoFA checkpoint's encoder, alone and refined")
    args = parser.parse_args(argv)
    batch = held_out_batch(args.shards, args.faces, args.size)
    params = batch.params

    model = MoFA(image_size=args.size, depths=(1,), width=8).eval()  # untrained: predicts the mean face
    with torch.no_grad():
        mean = model(batch.image)
    model_3dmm = model.decoder.model
    truth = model_3dmm(shape=params["shape"], expression=params["expression"]).vertices
    baseline = model._ground_truth_metrics(mean, params)["vertex_error_mean_face"]
    print(
        json.dumps(
            {
                "measure": "mean face",
                "vertex_error_mm": round(float(baseline * model_3dmm.mm_per_unit), 4),
                "faces": int(truth.shape[0]),
            }
        ),
        flush=True,
    )
    for part in ("shape", "expression"):
        oracle = mean._replace(**{part: params[part][:, : getattr(mean, part).shape[1]]})
        print(
            json.dumps({"measure": f"oracle: exact {part}, the rest mean", **ratios(model, oracle, params)})
        )

    starts = [
        ("mean face", mean),
        (
            "truth",
            model.layout.from_dict(
                {part: params[part][:, :size] for part, size in model.layout.sizes().items()}
            ),
        ),
    ]
    if args.checkpoint:
        trained = MoFA.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
        with torch.no_grad():
            encoded = trained(batch.image)
        print(json.dumps({"measure": "encoder", **ratios(trained, encoded, params)}), flush=True)
        starts.append(("encoder", encoded))
    for prior in args.priors:
        torch.manual_seed(0)
        weights = LossWeights(landmark=args.landmark, shape=prior, expression=prior, albedo=args.albedo)
        refiner = MoFA(image_size=args.size, depths=(1,), width=8, weights=weights)
        refiner.eval()
        for name, start in starts:
            for steps in args.steps:
                refined, history = refine_code(
                    refiner.weighted_loss, batch, start, RefineOptions(steps, args.lr)
                )
                row = {
                    "measure": f"refined from the {name}",
                    "steps": steps,
                    "prior": prior,
                    "landmark": args.landmark,
                    "loss_first": round(history[0], 4),
                    "loss_last": round(history[-1], 4),
                }
                print(json.dumps({**row, **ratios(refiner, refined, params)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
