"""`facegen predict` throughput on real photos: faces per second end to end, and seconds per face in each stage:
crop (decode + landmarks from the side files + alignment), encode, fit (the fitting schedule), geometry (decoding for the
writers) and each writer (vertex-colour meshes, textures, textured meshes, overlay, coefficients).

The writers run in FaceExporter's background thread, overlapping the next batch's work, so the stage times
(each summed over its own thread) can add up to more than the wall time per face. Photos come with landmark files (the shared assets' dlib XML / .pts), so no detector runs; the model is untrained
(the encoder's cost does not depend on its weights). Prints one JSON line per fitting setting. Examples:

    python benchmarks/predict.py        # ../shared/assets photos, no fitting and configs/mofa.yaml's schedule
    python benchmarks/predict.py --photos PHOTOS --fit none --texture-size 512 --model models/ict_face.npz
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml
from fitting import schedule  # benchmarks/fitting.py
from lightning.pytorch import Trainer

from facegen.callbacks.face_exporter import FaceExporter
from facegen.data import FaceDataModule
from facegen.data import photo_stream as photo_stream_module
from facegen.export import face_files
from facegen.tasks import MoFA

ROOT = Path(__file__).resolve().parents[1]
#: Writer stages: functions of facegen.export.face_files timed where write_face calls them.
WRITERS = {
    "mesh_colours": "write_vertex_colour_obj",
    "textures": "_write_textures",
    "mesh_textured": "write_textured_obj",
    "overlay": "_overlay",
    "code": "_readable",
}


class Timings:
    """Seconds per stage, accumulated by wrapping module attributes for the duration of one run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._restore: list[tuple[object, str, object]] = []

    def wrap(self, owner, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        setattr(owner, name, timed)
        self._restore.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore.clear()


def run(args, fit: str) -> dict:
    refine = schedule(yaml.safe_load(Path(args.config).read_text())) if fit == "config" else None
    model = MoFA(face_model=args.model, image_size=args.size, refine=refine)
    data = FaceDataModule(
        predict_dir=args.photos,
        predict_detector="files",
        batch_size=args.batch,
        num_workers=0,
        image_size=args.size,
    )
    timings = Timings()
    timings.wrap(photo_stream_module, "process_photo", "crop")
    timings.wrap(MoFA, "forward", "encode")
    timings.wrap(MoFA, "refined", "fit")
    timings.wrap(MoFA, "reconstruct", "reconstruct")
    for stage, name in WRITERS.items():
        timings.wrap(face_files, name, stage)
    with tempfile.TemporaryDirectory() as out:
        exporter = FaceExporter(out, model.decoder.model, overwrite=True, texture_size=args.texture_size)
        trainer = Trainer(
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[exporter],
        )
        started = time.perf_counter()
        try:
            trainer.predict(model, data, return_predictions=False)
        finally:
            timings.restore()
        total = time.perf_counter() - started
        faces = len(exporter.written)
    stages = dict(timings.seconds)
    # decoding and rendering for the writers, in MoFA.reconstruct (main thread) around the encoder and the fit
    stages["geometry"] = stages.pop("reconstruct") - stages.get("encode", 0.0) - stages.get("fit", 0.0)
    per_face = {k: round(v / max(faces, 1), 4) for k, v in sorted(stages.items())}
    return {
        "benchmark": "predict",
        "fit": fit if fit == "none" else args.config,
        "faces": faces,
        "seconds": round(total, 2),
        "faces_per_second": round(faces / total, 3),
        "seconds_per_face": per_face,
        "texture_size": args.texture_size,
        "image_size": args.size,
        "model": args.model,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--photos",
        default=str(ROOT.parent / "shared" / "assets" / "photos" / "pseudo"),
        help="folder of photos with landmark files (.pts or dlib XML)",
    )
    parser.add_argument("--model", default="builtin", help="face model: builtin or a canonical .npz")
    parser.add_argument("--size", type=int, default=224, help="crop size")
    parser.add_argument("--texture-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--fit",
        nargs="+",
        choices=("none", "config"),
        default=["none", "config"],
        help="measure without fitting and/or with --config's fitting schedule (model.init_args.refine)",
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "mofa.yaml"))
    args = parser.parse_args()
    for fit in args.fit:
        print(json.dumps(run(args, fit)), flush=True)


if __name__ == "__main__":
    main()
