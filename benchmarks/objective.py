"""Does MoFA's training objective prefer the true face? It is evaluated on synthetic faces with known codes, at
the truth, at the mean face and along the line between them (shape and expression scaled by s, pose,
reflectance and light held at the truth), for a MoFA config's loss weights (and any weights given on the command
line). An encoder trained on an objective whose minimum lies at s < 1 is pulled towards the mean face whatever
its capacity.

Prints one JSON line per weight setting: the objective at each s (batch mean), the s that scores best, and the
per-term values at the truth and at the mean face. The faces are rendered as the quickstart's training data
(``facegen synth``'s sampler and renderer, written as JPEG shards and read back as training reads them).

    python benchmarks/objective.py --config configs/mofa.yaml
    python benchmarks/objective.py --config configs/mofa.yaml --weights '{"shape": 1e-4, "expression": 1e-4}'
    python benchmarks/objective.py --config configs/mofa_paper.yaml --face_model builtin

A learned reflectance (ICT-FaceKit, FLAME: no albedo basis) has no true code: it is held at the synthetic faces'
own (the generator's skin albedo with each face's true coefficients, in place of the untrained learned basis, as a
learned basis that had fitted the faces would give), so only the geometry varies; the learned basis's smoothness
term, constant along the line, is left out.

    python benchmarks/objective.py --config configs/mofa_ict.yaml --face_model ict-face
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch
import yaml

from facegen.data import FaceDataModule, SynthOptions
from facegen.data.synth import RandomSkinAlbedo, SynthJob
from facegen.decoder import FaceCode
from facegen.losses import LossWeights
from facegen.tasks import MoFA

#: The scales of the true shape and expression evaluated (0: the mean face, 1: the truth).
SCALES = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5)


def build_model(config: dict, size: int | None) -> MoFA:
    """The config's MoFA, untrained, with its loss weights; a learned reflectance is replaced by the albedo the
    synthetic faces are rendered with (the face model's basis, or the generator's skin albedo for models without
    one), so the faces' true reflectance codes hold it at the truth."""
    init = {
        key: value
        for key, value in config["model"]["init_args"].items()
        if key not in ("fit", "refine", "validate_fitted", "validate_refined", "video", "weights")
    }
    init["depths"] = tuple(init.get("depths", (2, 2, 2, 2)))
    if size:
        init["image_size"] = size
    weights = LossWeights(**(config["model"]["init_args"].get("weights") or {}))
    model = MoFA(**init, weights=weights).eval()
    if model.decoder.albedo is not None:  # learned: hold it at the faces' own, as facegen synth renders them
        face_model = model.decoder.model
        model.decoder.albedo = None if face_model.has_albedo else RandomSkinAlbedo(face_model)
    return model


def faces(model: MoFA, count: int, folder: Path, seed: int = 7):
    """``count`` synthetic faces of the model's face model as the training reads them, with their true codes."""
    spec = model.input_spec
    options = SynthOptions(size=spec.image_size)
    job = SynthJob(
        spec.face_model,
        folder,
        count,
        count,
        seed,
        options=options,
        progress=False,
        fov=spec.fov,
        fill=spec.fill,
    )
    job.run()
    data = FaceDataModule(val=str(folder), batch_size=count, num_workers=0)
    data.follow_task(spec)
    data.setup("validate")
    batch = data.on_after_batch_transfer(next(iter(data.val_dataloader())), 0)
    truth = FaceCode(**{part: batch.params[part] for part in FaceCode._fields})
    return batch, truth


def scaled(truth: FaceCode, scale: float) -> FaceCode:
    return truth._replace(shape=truth.shape * scale, expression=truth.expression * scale)


@torch.no_grad()
def curve(model: MoFA, batch, truth: FaceCode, weights: LossWeights) -> dict:
    """The objective along the line from the mean face to the truth (and beyond), and its terms at both ends."""
    targets = model.targets(batch)
    values = {s: model.weighted_loss(targets, scaled(truth, s), weights).item() for s in SCALES}
    terms = {
        name: {
            k: round(v.item(), 6)
            for k, v in model.loss_terms(targets, scaled(truth, s), weights=weights).items()
        }
        for name, s in (("truth", 1.0), ("mean_face", 0.0))
    }
    best = min(values, key=values.get)
    return {
        "objective": {str(s): round(v, 6) for s, v in values.items()},
        "best_scale": best,
        "truth_beats_mean_face": values[1.0] < values[0.0],
        "terms": terms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/mofa.yaml", help="a MoFA config")
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--size", type=int, help="crop size (default: the config's)")
    parser.add_argument("--weights", action="append", default=[], help="JSON of loss weights to try as well")
    parser.add_argument("--face_model", help="face model instead of the config's (e.g. builtin)")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    if args.face_model:
        config["model"]["init_args"]["face_model"] = args.face_model
    model = build_model(config, args.size)
    with tempfile.TemporaryDirectory() as folder:
        batch, truth = faces(model, args.faces, Path(folder))
    settings = [("config", model.weights)] + [
        (text, dataclasses.replace(model.weights, **json.loads(text))) for text in args.weights
    ]
    for name, weights in settings:
        row = {"benchmark": "objective", "config": args.config, "weights": name, "faces": len(batch)}
        print(json.dumps({**row, **curve(model, batch, truth, weights)}), flush=True)


if __name__ == "__main__":
    main()
