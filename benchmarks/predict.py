"""`facegen predict` throughput on real photos: faces per second end to end, and seconds per face in each stage:
crop (decode + landmarks from the side files + alignment), encode, fit (the fitting schedule), geometry (decoding for the
writers) and each writer (vertex-colour meshes, textures, textured meshes, overlay, coefficients).

The writers run in FaceExporter's background thread, overlapping the next batch's work, so the stage times
(each summed over its own thread) can add up to more than the wall time per face; ``cpu_seconds_per_face`` is
the process's CPU time (all threads) per face, which bounds the rate on a machine's cores and varies less
than the wall time on a shared machine. Photos come with landmark files (the shared assets' dlib XML / .pts), so no detector runs; the model is the config's, untrained
(the encoder's cost does not depend on its weights). Prints one JSON line per fitting setting. Examples:

    python benchmarks/predict.py        # ../shared/assets photos, no fitting and configs/mofa.yaml's schedule
    python benchmarks/predict.py --config configs/photos_ict.yaml --repeat 2   # the ICT photo path, its encoder
    python benchmarks/predict.py --config configs/photos_ict.yaml --outputs code   # coefficients only
    python benchmarks/predict.py --fit none --repeat 8   # 8 copies of each photo: the steady-state rate
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path

import cv2
import torch
from fitting import read_configs, schedule  # benchmarks/fitting.py
from lightning.pytorch import Trainer

from facegen.data import FaceDataModule
from facegen.data import photo_stream as photo_stream_module
from facegen.data.landmarks import read_pts, write_pts
from facegen.export import face_files
from facegen.export.outputs import DEFAULT_OUTPUTS, OUTPUTS
from facegen.tasks import MoFA

ROOT = Path(__file__).resolve().parents[1]
#: Settings of a run, not of the model, that the benchmark sets itself.
RUN_TIME = ("fit", "refine", "weights", "validate_fitted", "validate_refined", "video")
#: Writer stages: functions of facegen.export.face_files timed where write_face calls them.
WRITERS = {
    "mesh_colours": "write_vertex_colour_obj",
    "textures": "_write_textures",
    "mesh_textured": "write_textured_objs",
    "overlay": "_overlay",
    "maps": "_write_maps",
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


def repeated(photos: Path, copies: int, into: Path, upscale: float = 1.0) -> Path:
    """``into``, holding ``copies`` copies of every photo in ``photos`` (named ``r<k>_<name>``) with their landmark
    files (``.pts`` the same way, dlib XML files listing every copy), so a run sees ``copies`` times the faces and
    its rate approaches the steady state of a large photo collection. The copies are symbolic links, or with
    ``upscale`` > 1 the photos enlarged that many times (bicubic, JPEGs at quality 92; landmarks scaled with them), to
    measure phone-sized photos."""
    for source in sorted(photos.iterdir()):
        if source.suffix.lower() == ".xml":
            tree = ElementTree.parse(source)
            images = tree.getroot().find("images")
            originals = list(images)
            for element in originals:
                images.remove(element)
                for node in element.iter():
                    for name in ("x", "y", "left", "top"):  # 0-based pixel centres
                        if name in node.attrib:
                            node.set(name, f"{(float(node.get(name)) + 0.5) * upscale - 0.5:.2f}")
                    for name in ("width", "height"):
                        if name in node.attrib:
                            node.set(name, f"{float(node.get(name)) * upscale:.2f}")
            for k in range(copies):
                for element in originals:
                    copy = ElementTree.fromstring(ElementTree.tostring(element))
                    copy.set("file", f"r{k}_{element.get('file')}")
                    images.append(copy)
            tree.write(into / source.name)
            continue
        if upscale == 1:
            for k in range(copies):
                os.symlink(source.resolve(), into / f"r{k}_{source.name}")
            continue
        if source.suffix.lower() == ".pts":
            points = read_pts(source)
            for k in range(copies):
                write_pts(into / f"r{k}_{source.name}", (points + 0.5) * upscale - 0.5)
            continue
        image = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if image is None:
            continue
        large = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
        for k in range(copies):
            cv2.imwrite(str(into / f"r{k}_{source.name}"), large, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return into


def build_model(args, fit: str) -> MoFA:
    """The ``--config``'s MoFA, untrained (its encoder's cost does not depend on its weights): its encoder and
    face model (or ``--model``), at ``--size`` when given, with its fitting schedule or none."""
    config = read_configs([args.config])
    init = {k: v for k, v in config["model"]["init_args"].items() if k not in RUN_TIME}
    init["face_model"] = args.model or init.get("face_model", "builtin")
    init["image_size"] = args.size or init.get("image_size", 224)
    init["depths"] = tuple(init.get("depths", (2, 2, 2, 2)))
    return MoFA(**init, fit=schedule(config) if fit == "config" else None)


def run(args, fit: str) -> dict:
    model = build_model(args, fit)
    size = model.hparams.image_size
    photos = tempfile.TemporaryDirectory()
    data = FaceDataModule(
        predict_dir=str(repeated(Path(args.photos), args.repeat, Path(photos.name), args.upscale)),
        predict_detector="files",
        batch_size=args.batch,
        num_workers=0,
        image_size=size,
    )
    timings = Timings()
    timings.wrap(photo_stream_module, "process_photo", "crop")
    timings.wrap(MoFA, "forward", "encode")
    timings.wrap(MoFA, "fitted", "fit")
    timings.wrap(MoFA, "reconstruct", "reconstruct")
    for stage, name in WRITERS.items():
        timings.wrap(face_files, name, stage)
    with tempfile.TemporaryDirectory() as out, photos:
        exporter = model.prediction_writer(out, True, args.texture_size, args.outputs)
        trainer = Trainer(
            accelerator="cpu",
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[exporter],
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            trainer.predict(model, data, return_predictions=False)
        finally:
            timings.restore()
        total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
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
        "cpu_seconds_per_face": round(cpu / max(faces, 1), 4),
        "seconds_per_face": per_face,
        "outputs": sorted(args.outputs),
        "texture_size": args.texture_size,
        "image_size": size,
        "model": model.hparams.face_model,
        "config": args.config,
        "batch": args.batch,
        "repeat": args.repeat,
        "upscale": args.upscale,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--photos",
        default=str(ROOT.parent / "shared" / "assets" / "photos" / "pseudo"),
        help="folder of photos with landmark files (.pts or dlib XML)",
    )
    parser.add_argument(
        "--model", help="face model: builtin, a named one or a canonical .npz (default: --config's)"
    )
    parser.add_argument("--size", type=int, help="crop size (default: --config's)")
    parser.add_argument(
        "--outputs", nargs="+", choices=OUTPUTS, default=list(DEFAULT_OUTPUTS), help="what to write per face"
    )
    parser.add_argument("--texture-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--repeat", type=int, default=1, help="copies of every photo (and its landmarks) to predict"
    )
    parser.add_argument(
        "--upscale", type=float, default=1.0, help="enlarge the photos this many times (phone-sized photos)"
    )
    parser.add_argument(
        "--fit",
        nargs="+",
        choices=("none", "config"),
        default=["none", "config"],
        help="measure without fitting and/or with --config's fitting schedule (model.init_args.fit)",
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "mofa.yaml"))
    args = parser.parse_args()
    for fit in args.fit:
        print(json.dumps(run(args, fit)), flush=True)


if __name__ == "__main__":
    main()
