"""How well can MoFA's encoder learn shape at all? The upper bound: the same encoder, synthetic data and number of
steps as a MoFA config, trained with direct supervision of the code instead of MoFA's self-supervised objective,
so the gap between "can learn" and "does learn" is measured.

The supervised loss is the squared error of every code part against the renders' ground truth (shape, expression,
reflectance in units of the model's standard deviations; rotation in radians; translation and light in code
units), averaged per part. With ``--supervision vertices`` shape and expression are supervised through the
geometry they make instead: the mean squared vertex distance (in mm, over the face region) between the
predicted and the true neutral-pose mesh, which weighs each mode by how much it moves the face, as the vertex
error metric does. Augmentation is off (augmented batches carry no ground truth) and so is the
refinement (only the encoder is measured). Prints one JSON line: the last validation's encoder metrics (vertex
error after similarity alignment and its ratio to the mean face, landmark error), to compare with the MoFA run's
``val/vertex_error_ratio``.

    python benchmarks/supervised_upper_bound.py --config configs/mofa.yaml [--max_steps 1500] [--out DIR]
        [--supervision code|vertices]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from facegen.cli import FacegenCLI
from facegen.data.batch import FaceBatch
from facegen.errors import ConfigError
from facegen.tasks import MoFA

#: The reported validation metrics.
REPORTED = (
    "vertex_error_ratio",
    "vertex_error_mm",
    "vertex_error_rigid_ratio",
    "landmark_error_px",
    "rotation_error_deg",
)


class SupervisedMoFA(MoFA):
    """MoFA whose encoder learns from the synthetic ground truth of each batch (see the module docstring)."""

    #: ``code`` or ``vertices`` (set by :func:`main` before training).
    supervision = "code"

    def training_step(self, batch: FaceBatch, batch_index: int) -> Tensor:
        if batch.params is None:
            raise ConfigError(
                "the supervised upper bound needs synthetic shards with ground truth and no augmentation"
            )
        code = self(batch.image)
        terms = {}
        geometry = ("shape", "expression") if self.supervision == "vertices" else ()
        if geometry:
            terms["vertices"] = self._vertex_term(code, batch.params)
        for part, predicted in code._asdict().items():
            if part in geometry:
                continue
            truth = batch.params[part]
            k = min(predicted.shape[1], truth.shape[1])
            if k:
                terms[part] = (predicted[:, :k] - truth[:, :k].to(predicted)).pow(2).mean()
        loss = torch.stack(list(terms.values())).sum()
        self.log_dict({f"train/supervised_{k}": v.detach() for k, v in terms.items()}, batch_size=len(batch))
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(batch))
        return loss

    def _vertex_term(self, code, params: dict[str, Tensor]) -> Tensor:
        """Mean squared distance (mm²) between predicted and true neutral-pose face-region vertices."""
        model = self.decoder.model
        ks, ke = code.shape.shape[1], code.expression.shape[1]
        predicted = model(shape=code.shape, expression=code.expression).vertices
        truth = model(
            shape=params["shape"][:, :ks].to(code.shape),
            expression=params["expression"][:, :ke].to(code.shape),
        ).vertices
        difference = (predicted - truth)[:, self.region] * model.mm_per_unit
        return difference.pow(2).sum(-1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/mofa.yaml")
    parser.add_argument("--max_steps", type=int, default=None, help="default: the config's")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--supervision", choices=("code", "vertices"), default="code")
    options = parser.parse_args()
    SupervisedMoFA.supervision = options.supervision
    out = Path(options.out or tempfile.mkdtemp(prefix="supervised-"))
    sys.path.insert(0, str(Path(__file__).parent))  # this module, by class_path
    args = ["fit", "--config", options.config, "--model.class_path", "supervised_upper_bound.SupervisedMoFA"]
    args += ["--data.init_args.augment", "null", "--data.init_args.train_ground_truth", "true"]
    args += ["--model.init_args.fit", "null"]
    args += [
        "--trainer.callbacks",
        "[]",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.logger",
        "false",
    ]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(out)]
    if options.max_steps:
        args += ["--trainer.max_steps", str(options.max_steps)]
    cli = FacegenCLI(args=args)
    metrics = cli.trainer.callback_metrics
    result = {"config": options.config, "steps": cli.trainer.global_step, "supervision": options.supervision}
    result.update(
        {name: round(float(metrics[f"val/{name}"]), 4) for name in REPORTED if f"val/{name}" in metrics}
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
