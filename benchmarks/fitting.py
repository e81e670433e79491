"""The fitting engine stage by stage on real photos with 68-point ground truth and on synthetic faces of known
geometry: per face the landmark NME (mean point error over sqrt(w·h) of the ground-truth box, as AFLW2000-3D
reports it) of the model's landmark vertices (``nme``, the 3D convention of AFLW2000-3D) and with the jaw of the
side turned away on the silhouette (``nme_silhouette``, the convention of 2D annotations), the fitted yaw and, for synthetic faces, the vertex error after similarity alignment relative to the
mean face's; per stage the seconds and faces per second (after one untimed warm-up fit of the first batch). Prints JSON lines: one per face and stage (``face``),
one summary per source and stage (``summary``); for the wild set, per yaw bin, also the fitted yaw against the
pose table's (``yaw_error_deg``) and the faces turned 15° or more fitted turned to the other side (``wrong_way``).

The photos' landmark files (iBUG ``.pts`` beside each photo, or a dlib XML) give both the crops and the landmarks
the fit uses, so the photo NME measures how well the face model and the fitting explain real landmark
configurations (jaw silhouettes, expressions, poses), not a detector's accuracy; with ``--detector NAME`` the
crops and the fitted landmarks come from that detector instead (its 68 points and, when it gives them and the
schedule's ``dense`` weight is on, its dense points on a face model with dense landmarks) and the files are only
the ground truth, so the NME is that of detector + fit. Synthetic faces are rendered as
``facegen evaluate synthetic`` renders them (a wider field of view, larger poses and stronger directional light
than the training data) and fitted with the model's default camera; ``--shards`` takes faces of synthetic
shards instead (e.g. the quickstart's validation set, rendered as in training). Synthetic faces are fitted from
their exact landmarks or with ``--landmark_noise`` pixels (at 224²) of Gaussian noise (a detector's error; the NME
is measured against the exact ones).

    python benchmarks/fitting.py --config configs/mofa_ict.yaml --model models/ict_face.npz \\
        --photos ../shared/assets/photos/annotated ../shared/assets/photos/pseudo --synthetic 64
    python benchmarks/fitting.py --config configs/mofa.yaml --checkpoint runs/mofa/checkpoints/last.ckpt \
        --synthetic 64 --shards data/synth/builtin-128/val
    python benchmarks/fitting.py --config configs/mofa.yaml --fit configs/fit/shape_from_shading.yaml \\
        --checkpoint runs/mofa/checkpoints/last.ckpt --synthetic 64 --shards data/synth/builtin-128/val
    python benchmarks/fitting.py --config configs/photos_ict.yaml --model models/ict_face_dense.npz \
        --photos ../shared/assets/photos/annotated --detector litert
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from jsonargparse import ArgumentParser

from facegen.commands.synthetic_benchmark import SyntheticSettings, render_benchmark
from facegen.data import FaceDataModule
from facegen.data.photos import PhotoInput
from facegen.data.wild_set import AnnotatedFace, read_wild
from facegen.decoder.code import FaceCode
from facegen.evaluation.aflw2000 import box_nme
from facegen.evaluation.geometry import vertex_error
from facegen.evaluation.wild import TABLE_YAW_SIGN, nme_io, overlap, summarise
from facegen.fitting import FitSchedule, LandmarkModel
from facegen.tasks import MoFA

STAGES = ("start", "pose", "landmarks", "photometric")


def parse_schedule(fit: dict | None) -> FitSchedule:
    """A fitting schedule's settings (a preset's contents; None: fit nothing) as a :class:`FitSchedule`, parsed
    as the CLI parses them."""
    parser = ArgumentParser()
    parser.add_argument("--fit", type=FitSchedule | None, default=None)
    return parser.instantiate(parser.parse_object({"fit": fit})).fit or FitSchedule()


def schedule(config: dict) -> FitSchedule:
    """The config's ``model.init_args.fit`` (or its former name ``refine``) as a :class:`FitSchedule` (a preset's
    path is resolved by :func:`read_configs`)."""
    init = config["model"]["init_args"]
    return parse_schedule(init.get("fit", init.get("refine")))


def read_configs(paths: list[str], fit: str | None = None) -> dict:
    """The configs ``paths`` merged in order (later ones win key by key, as in facegen's CLI), with a fitting
    schedule given as a preset file (``fit: fit/standard.yaml``, relative to its config) read in; ``fit``: a
    preset that replaces the configs' schedule."""
    config: dict = {}
    for path in paths:
        one = yaml.safe_load(Path(path).read_text()) or {}
        init = (one.get("model") or {}).get("init_args") or {}
        if isinstance(init.get("fit"), str):
            init["fit"] = yaml.safe_load((Path(path).parent / init["fit"]).read_text())
        config = merged(config, one)
    if fit is not None:
        config["model"]["init_args"]["fit"] = yaml.safe_load(Path(fit).read_text())
    return config


def build_model(args, config: dict) -> MoFA:
    """The checkpoint's MoFA, or the config's untrained one (its encoder predicts the mean face)."""
    if args.checkpoint:
        return MoFA.load_from_checkpoint(args.checkpoint, map_location="cpu", fit=schedule(config)).eval()
    init = {k: v for k, v in config["model"]["init_args"].items() if k not in ("fit", "refine", "weights")}
    if args.model:
        init["face_model"] = args.model
    init["depths"] = tuple(init.get("depths", (2, 2, 2, 2)))
    return MoFA(**init, fit=schedule(config)).eval()


def batches(model: MoFA, photos: str, batch_size: int, detector: str = "files", truth=None):
    """Batches of the photos' faces: from their landmark files, or (``detector``) from that detector, each
    detected face with its annotation (``truth``: photo file name -> annotated faces, default the landmark files
    beside the photos) in crop pixels as ``meta["truth"]`` and its yaw as ``meta["truth_yaw"]`` (faces without
    one are left out; each annotation is matched once)."""
    if detector != "files" and truth is None:
        truth = {
            p.name: [
                AnnotatedFace(f"{p.name}#{k}", Path(p.name), points, float("nan"))
                for k, points in enumerate(p.known_landmarks)
            ]
            for p in PhotoInput(photos).iter_photos()
            if not isinstance(p, tuple)
        }
    used: set[str] = set()
    for batch in photo_batches(model, photos, batch_size, detector):
        if detector != "files":
            keep = []
            for i, meta in enumerate(batch.meta):
                candidates = [f for f in truth.get(meta["source"], []) if f.key not in used]
                scored = [(overlap(meta["bbox"], f.points), k) for k, f in enumerate(candidates)]
                scored = [(score, k) for score, k in scored if score is not None]
                if scored:
                    face = candidates[max(scored)[1]]
                    transform = np.asarray(meta["transform"])
                    points = face.points @ transform[:, :2].T + transform[:, 2]
                    meta["truth"], meta["truth_yaw"] = points.astype(np.float32), face.yaw
                    used.add(face.key)
                    keep.append(i)
            batch = batch.take(keep)
        if len(batch):
            yield batch


def photo_batches(model: MoFA, photos: str, batch_size: int, detector: str = "files"):
    """Batches of every face in the folder ``photos``: from their landmark files (``files``) or found by
    ``detector``, which never reads the landmark files beside the photos (they are ground truth, not input)."""
    module = FaceDataModule(
        predict_dir=photos, predict_detector=detector, batch_size=batch_size, num_workers=0
    )
    module.follow_task(model.input_spec)
    module.setup("predict")
    if detector != "files":
        module.streams["predict"].photos.use_landmark_files = False
    for raw in module.predict_dataloader():
        yield module.on_after_batch_transfer(raw, 0)


def wild_photos(root: Path, folder: Path) -> dict[str, list[AnnotatedFace]]:
    """The wild set's photos linked into ``folder`` without their ``.pts`` (one unique name per photo), and
    its annotated faces by linked name."""
    truth: dict[str, list[AnnotatedFace]] = {}
    for face in read_wild(root):
        name = str(face.photo.relative_to(root)).replace("/", "_")
        target = folder / name
        if not target.exists():
            target.symlink_to(face.photo.resolve())
        truth.setdefault(name, []).append(face)
    return truth


def stages(model: MoFA, batch, options: FitSchedule):
    """(stage name, code, seconds) after the encoder and after each stage of ``options`` that is on."""
    start = time.perf_counter()
    with torch.no_grad():
        code = model(batch.image)
    yield "start", code, time.perf_counter() - start
    single = {
        "pose": FitSchedule(pose=options.pose),
        "landmarks": FitSchedule(landmarks=options.landmarks),
        "photometric": FitSchedule(photometric=options.photometric),
    }
    for name, only in single.items():
        if only.active:
            fitted = model.fitted(batch, code, only)
            code = fitted.code
            yield name, code, fitted.seconds[name]


def shard_batches(model: MoFA, shards: str, batch_size: int, limit: int):
    """The first ``limit`` faces of synthetic shards (with their ground truth), in batches; when the face model
    has dense landmarks, their exact projections from the ground-truth code ride along as the batch's dense
    landmarks (what a perfect dense detector would give)."""
    module = FaceDataModule(val=shards, batch_size=batch_size, num_workers=0)
    module.follow_task(model.input_spec)
    module.setup("validate")
    seen = 0
    for raw in module.val_dataloader():
        batch = module.on_after_batch_transfer(raw, 0)
        batch = batch.take(range(min(len(batch), limit - seen)))
        seen += len(batch)
        if model.decoder.model.dense_scheme is not None:
            batch = dataclasses.replace(batch, dense_landmarks=exact_dense(model, batch.params))
        yield batch
        if seen >= limit:
            return


def exact_dense(model: MoFA, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, N, 2) crop pixels of the face model's dense landmarks on the ground-truth faces ``params``."""
    decoder = model.decoder
    code = FaceCode(**{part: params[part] for part in FaceCode._fields})
    with torch.no_grad():
        points = decoder.model.dense_points(decoder(code).vertices)
    return points[..., :2] / points[..., 2:] * decoder.intrinsics.diagonal()[:2] + decoder.intrinsics[:2, 2]


def measure(
    model: MoFA,
    source: str,
    found_batches,
    options: FitSchedule,
    truth=None,
    noise: float = 0.0,
    annotated: int | None = None,
):
    """Fit every batch of ``found_batches`` stage by stage and print the rows; ``truth(batch, i, vertices)``
    scores face i's fitted vertices against its ground truth; ``noise``: landmark noise in pixels at 224²;
    ``annotated``: the annotated faces of the source, for per-yaw-bin summaries (:mod:`facegen.evaluation.wild`)
    of the fitted 68 points in both conventions and of the detector's own, with the faces not found."""
    rows: dict[str, list[dict]] = {}
    seconds = dict.fromkeys(STAGES, 0.0)
    generator = torch.Generator().manual_seed(0)
    warm = False
    for batch in found_batches:
        if not warm:  # the first call's one-time costs (kernel selection, caches) are not throughput
            for _ in stages(model, batch, options):
                pass
            warm = True
        clean = batch.landmarks
        jitter = torch.randn(clean.shape, generator=generator) * noise * batch.size / 224
        noisy = dataclasses.replace(batch, landmarks=clean + jitter)
        if batch.dense_landmarks is not None:
            dense_jitter = (
                torch.randn(batch.dense_landmarks.shape, generator=generator) * noise * batch.size / 224
            )
            noisy = dataclasses.replace(noisy, dense_landmarks=batch.dense_landmarks + dense_jitter)
        reference = [meta.get("truth") for meta in batch.meta]
        for stage, code, spent in stages(model, noisy, options):
            seconds[stage] += spent
            with torch.no_grad():
                decoded = model.decoder(code)
                vertices = model.decoder.model(shape=code.shape, expression=code.expression).vertices
                contour = LandmarkModel(model.decoder, code.shape.shape[1], code.expression.shape[1])
                silhouette = contour.silhouette_landmarks(code, decoded.pixels, noisy.landmarks)
            for i in range(len(batch)):
                observed = clean[i].numpy() if reference[i] is None else reference[i]
                row = {
                    "face": batch.key[i],
                    "stage": stage,
                    "nme": box_nme(decoded.landmarks[i].numpy(), observed),
                    "nme_silhouette": box_nme(silhouette[i].numpy(), observed),
                    "nme_io": nme_io(decoded.landmarks[i].numpy(), observed),
                    "nme_io_silhouette": nme_io(silhouette[i].numpy(), observed),
                    "yaw_deg": float(code.rotation[i, 1].rad2deg()),
                    "shape_rms": float(code.shape[i].pow(2).mean().sqrt()),
                    "expression_range": [float(code.expression[i].min()), float(code.expression[i].max())]
                    if code.expression.shape[1]
                    else None,
                }
                if reference[i] is not None:
                    row["yaw_annotated"] = batch.meta[i].get("truth_yaw", float("nan"))
                    if stage == "start":  # the detector's own points, scored once
                        row["nme_detector"] = box_nme(clean[i].numpy(), observed)
                        row["nme_io_detector"] = nme_io(clean[i].numpy(), observed)
                if truth is not None:
                    row.update(truth(batch, i, vertices[i]))
                rows.setdefault(stage, []).append(row)
                print(json.dumps({"source": source, **row}), flush=True)
    for stage, found in rows.items():
        summary = {
            "summary": source,
            "stage": stage,
            "faces": len(found),
            "nme_mean": float(np.mean([r["nme"] for r in found])),
            "nme_median": float(np.median([r["nme"] for r in found])),
            "nme_silhouette_mean": float(np.mean([r["nme_silhouette"] for r in found])),
            "seconds": round(seconds[stage], 3),
            "faces_per_second": round(len(found) / max(seconds[stage], 1e-9), 1),
        }
        if truth is not None:
            summary["vertex_error_ratio"] = float(np.mean([r["vertex_error_ratio"] for r in found]))
            yaw_errors = np.array([abs(r["yaw_deg"] - r["yaw_true_deg"]) for r in found])
            summary["yaw_error_deg_mean"] = round(float(yaw_errors.mean()), 2)
            summary["yaw_error_deg_max"] = round(float(yaw_errors.max()), 2)
            summary["mirrored"] = int(sum(r["yaw_deg"] * r["yaw_true_deg"] < 0 for r in found))
        if annotated is not None:
            for convention, suffix in (("3d", ""), ("2d", "_silhouette")):
                scored = [
                    {
                        "nme_box": r[f"nme{suffix}"],
                        "nme_io": r[f"nme_io{suffix}"],
                        "yaw": r["yaw_annotated"],
                        "fitted_yaw": TABLE_YAW_SIGN * r["yaw_deg"],
                    }
                    for r in found
                ]
                summary[f"bins_{convention}"] = summarise(scored, annotated)
            if stage == "start":
                scored = [
                    {"nme_box": r["nme_detector"], "nme_io": r["nme_io_detector"], "yaw": r["yaw_annotated"]}
                    for r in found
                ]
                summary["bins_detector"] = summarise(scored, annotated)
            summary["seconds_per_face"] = round(seconds[stage] / max(len(found), 1), 4)
        print(json.dumps(summary), flush=True)


def synthetic_truth(model: MoFA, folder: Path, n: int, yaw: tuple[float, float] | None = None):
    """Render ``n`` benchmark faces into ``folder`` (``yaw``: their |yaw| range in degrees, default the
    benchmark's); returns the scorer of a face's fitted vertices."""
    settings = SyntheticSettings(n=n)
    if yaw is not None:
        settings = dataclasses.replace(
            settings, options=dataclasses.replace(settings.options, yaw_min=yaw[0], yaw=yaw[1])
        )
    arrays = render_benchmark(model.decoder.model, model.hparams.image_size, settings, folder)
    face_model = model.decoder.model
    with torch.no_grad():
        truth = face_model(
            shape=torch.as_tensor(arrays["shape"]).float(),
            expression=torch.as_tensor(arrays["expression"]).float(),
        ).vertices

    def score(batch, i: int, vertices: torch.Tensor) -> dict:
        number = int(Path(batch.photo_path[i]).stem.split("_")[-1])
        return vertex_scores(model, vertices, truth[number], float(arrays["rotation"][number, 1]))

    return score


def shard_truth(model: MoFA):
    """The scorer of a face's fitted vertices against its shard's ground truth."""

    def score(batch, i: int, vertices: torch.Tensor) -> dict:
        params = batch.params
        with torch.no_grad():
            truth = model.decoder.model(
                shape=params["shape"][i : i + 1], expression=params["expression"][i : i + 1]
            ).vertices[0]
        return vertex_scores(model, vertices, truth, float(params["rotation"][i, 1]))

    return score


def vertex_scores(model: MoFA, vertices: torch.Tensor, truth: torch.Tensor, yaw: float) -> dict:
    """Vertex error (V, 3) against ``truth`` after similarity alignment, in mm and relative to the mean face's."""
    face_model, region = model.decoder.model, model.region
    error = vertex_error(vertices[None], truth[None], region, scale=True)[0]
    baseline = vertex_error(face_model.mean[None], truth[None], region, scale=True)[0]
    return {
        "vertex_error_mm": float(error * face_model.mm_per_unit),
        "vertex_error_ratio": float(error / baseline),
        "yaw_true_deg": float(np.rad2deg(yaw)),
    }


def merged(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s keys replacing its own, nested mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        action="append",
        help="a MoFA config: model and fitting schedule (default configs/mofa.yaml); several merge in order, "
        "later ones overriding earlier ones, as in facegen's CLI",
    )
    parser.add_argument(
        "--fit", help="a fitting schedule preset replacing the config's (e.g. configs/fit/*.yaml)"
    )
    parser.add_argument("--model", help="face model (default: the config's)")
    parser.add_argument(
        "--checkpoint", help="start from this MoFA checkpoint's encoder (default: the mean face)"
    )
    parser.add_argument("--photos", nargs="*", default=[], help="folders of photos with landmark files")
    parser.add_argument(
        "--wild",
        type=Path,
        default=None,
        help="the wild development set (poses.csv; its .pts are the ground truth, never the input): needs "
        "--detector",
    )
    parser.add_argument("--synthetic", type=int, default=0, help="also fit this many synthetic faces")
    parser.add_argument(
        "--synthetic_yaw",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="|yaw| range of the synthetic faces in degrees (e.g. 60 90 for turned faces)",
    )
    parser.add_argument("--shards", help="also fit synthetic shards (their ground truth scores the fit)")
    parser.add_argument("--shard_faces", type=int, default=64, help="faces taken from --shards")
    parser.add_argument(
        "--landmark_noise",
        type=float,
        default=0.0,
        help="Gaussian noise (pixels at 224²) on the synthetic landmarks",
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument(
        "--detector",
        default="files",
        help="landmarks of --photos from this detector (files: the annotations)",
    )
    args = parser.parse_args(argv)
    config = read_configs(args.config or ["configs/mofa.yaml"], args.fit)
    torch.manual_seed(0)
    model = build_model(args, config)
    options = model.fit_schedule
    for photos in args.photos:
        measure(model, Path(photos).name, batches(model, photos, args.batch_size, args.detector), options)
    if args.wild:
        if args.detector == "files":
            raise SystemExit("--wild needs --detector (its annotations are the ground truth, not the input)")
        with tempfile.TemporaryDirectory(prefix="wild-") as folder:
            truth = wild_photos(args.wild, Path(folder))
            found = batches(model, folder, args.batch_size, args.detector, truth)
            annotated = sum(len(faces) for faces in truth.values())
            measure(model, "wild", found, options, annotated=annotated)
    if args.synthetic:
        with tempfile.TemporaryDirectory(prefix="fitting-") as folder:
            truth = synthetic_truth(model, Path(folder), args.synthetic, args.synthetic_yaw)
            found = batches(model, folder, args.batch_size)
            measure(model, "synthetic", found, options, truth, args.landmark_noise)
    if args.shards:
        found = shard_batches(model, args.shards, args.batch_size, args.shard_faces)
        measure(model, "shards", found, options, shard_truth(model), args.landmark_noise)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
