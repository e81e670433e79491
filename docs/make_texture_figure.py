"""The texture section's picture: texture models side by side, one block of rows per model: its composites
(generated textures on the fitted, re-posed faces of the 2D generator, at the discriminator's resolution, as D
sees them; the same seeds for every model) and its reconstructions of photos (photo | render, from the
``side_by_side.png`` files that ``facegen predict`` wrote for it).

    python docs/make_texture_figure.py --run before=CKPT[:PREDICTIONS] --run after=CKPT[:PREDICTIONS] \\
        --generator runs/stylegan_synth/checkpoints/last.ckpt [--seeds 100000-100005] \\
        [--out docs/texture_models.jpg]

``CKPT``: a composite-mode ``TextureGAN`` checkpoint (its MoFA is read from the path it was trained with);
``PREDICTIONS``: the folder of ``facegen predict --config configs/texture_gan_composite.yaml --ckpt_path CKPT
--data facegen.data.FaceDataModule --data.predict_dir PHOTOS --out PREDICTIONS`` (optional). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facegen.data.batch import SeedBatch
from facegen.data.seeds import parse_seeds
from facegen.export.pictures import to_uint8
from facegen.tasks import MoFASource, TextureGAN
from facegen.tasks.adversarial import Regularization

CELL = 128  # pixels per picture
LABEL = 160  # width of the label column
GAP = 4


class Run:
    """One model of the figure: its label, checkpoint and (optional) reconstructions folder."""

    def __init__(self, spec: str) -> None:
        label, _, rest = spec.partition("=")
        checkpoint, _, predictions = rest.partition(":")
        if not label or not Path(checkpoint).is_file():
            raise SystemExit(f"--run {spec}: give LABEL=CHECKPOINT[:PREDICTIONS] with an existing checkpoint")
        if predictions and not Path(predictions).is_dir():
            raise SystemExit(f"--run {spec}: the predictions folder {predictions} does not exist")
        self.label, self.checkpoint = label, checkpoint
        self.predictions = Path(predictions) if predictions else None


@torch.no_grad()
def composites(run: Run, generator: str, seeds: list[int]) -> list[np.ndarray]:
    """(R, R, 3) uint8 composites of ``run``'s model for ``seeds`` (evaluation mode: the re-posing is drawn from
    the seeds, the same for every model)."""
    with torch.serialization.safe_globals([MoFASource, Regularization]):  # the settings its hparams hold
        model = TextureGAN.load_from_checkpoint(
            run.checkpoint, map_location="cpu", pretrained=generator
        ).eval()
    if model.hparams.mode != "composite":
        raise SystemExit(
            f"--run {run.label}: {run.checkpoint} is a {model.hparams.mode}-mode model, not composite"
        )
    condition = model.condition(SeedBatch(torch.tensor(seeds)))
    texture = model.generate(model.latents(len(seeds)), ema=True, truncation=model.truncation)
    images = (model.fake_inputs(texture, condition, None) + 1) / 2
    return [to_uint8(image) for image in images]


def reconstructions(folder: Path, count: int) -> list[np.ndarray]:
    """Photo and render cells (S, S, 3) uint8 of the first ``count`` faces of a predictions folder."""
    cells = []
    for path in sorted(folder.glob("*/side_by_side.png"))[:count]:
        picture = cv2.imread(str(path))[..., ::-1]
        size = picture.shape[0]
        cells += [picture[:, :size], picture[:, size : 2 * size]]
    return cells


def row(label: str, cells: list[np.ndarray], width: int) -> np.ndarray:
    """One labelled row of ``cells`` resized to :data:`CELL`, padded white to ``width`` pixels."""
    out = np.full((CELL, width, 3), 255, np.uint8)
    cv2.putText(out, label, (6, CELL // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    x = LABEL
    for cell in cells:
        if x + CELL > width:
            break
        tensor = torch.from_numpy(np.ascontiguousarray(cell)).permute(2, 0, 1)[None].float() / 255
        resized = F.interpolate(tensor, size=(CELL, CELL), mode="bilinear", align_corners=False)[0]
        out[:, x : x + CELL] = to_uint8(resized)
        x += CELL + GAP
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="LABEL=CHECKPOINT[:PREDICTIONS]")
    parser.add_argument("--generator", required=True, help="the 2D generator the models were trained on")
    parser.add_argument("--seeds", default="100000-100005")
    parser.add_argument("--out", default="docs/texture_models.jpg")
    args = parser.parse_args(argv)
    runs, seeds = [Run(spec) for spec in args.run], parse_seeds(args.seeds)
    width = LABEL + len(seeds) * (CELL + GAP)
    rows = []
    for run in runs:
        rows.append(row(f"{run.label}: composites", composites(run, args.generator, seeds), width))
        if run.predictions is not None:
            rows.append(
                row(f"{run.label}: photo, render", reconstructions(run.predictions, len(seeds) // 2), width)
            )
    figure = np.concatenate([np.pad(r, ((0, GAP), (0, 0), (0, 0)), constant_values=255) for r in rows])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, figure[..., ::-1])
    print(json.dumps({"figure": args.out, "runs": [run.label for run in runs], "seeds": seeds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
