"""``facegen evaluate BENCHMARK``: score a trained model on a public benchmark the user downloaded.

It runs ``facegen predict`` (a child process, exactly as a user would: the given config and checkpoint, the
benchmark's photos, ``--outputs [code]``) into ``OUT/predictions`` and scores what it wrote against the ground
truth: per-item results (``OUT/results.json``), the summary papers tabulate (``OUT/summary.json``) and the same as
a Markdown table (``OUT/summary.md``, also printed); the summary's numbers also go to the logger the config sets
(``trainer.logger``), as ``benchmark/<name>/...``. Rerunning skips faces already predicted.

Benchmarks: ``aflw2000`` (AFLW2000-3D, :mod:`facegen.evaluation.aflw2000`), ``now`` (the NoW challenge's layout
and its metric where the scans are present, :mod:`facegen.evaluation.now`), ``texture`` (texture reconstruction of
a texture model on photos: PSNR/SSIM/L1 (LPIPS) on visible face pixels and identity similarity under dlib's face
descriptor or a network you give,
:mod:`facegen.commands.texture_benchmark`) and ``synthetic`` (faces of the
checkpoint's face model with known ground truth, :mod:`facegen.commands.synthetic_benchmark`; the encoder alone
and after the config's fitting).

Why one module over 400 lines: the four benchmarks' command: each benchmark is a short function over the staging,
prediction and reporting they share."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser

from facegen.atomic import write_text_atomic
from facegen.data.landmarks import write_pts
from facegen.errors import ConfigError
from facegen.export.face_files import read_code_records

HELP = (
    "score a trained model on a benchmark: AFLW2000-3D or NoW from your own download, synthetic ground truth, "
    "or texture reconstruction of your photos"
)
#: How faces are cropped: by the predict config's detector, or from the ground-truth landmarks (papers that crop
#: that way; the fit then cannot refine on landmarks, so refinement is off).
Crop = Literal["detector", "truth"]
Benchmark = Literal["aflw2000", "now", "synthetic", "texture"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="facegen evaluate",
        description=HELP + ". Arguments after -- go to facegen predict, e.g. -- --trainer.accelerator gpu",
    )
    parser.add_argument("benchmark", type=Benchmark, help="aflw2000, now, synthetic or texture")
    parser.add_argument(
        "--config",
        type=str,
        action="append",
        required=True,
        help="predict config, e.g. configs/mofa_ict.yaml (repeat for several, as with facegen predict)",
    )
    parser.add_argument(
        "--ckpt_path",
        type=str | None,
        default=None,
        help="the trained model's checkpoint (none: the config's model as it is, e.g. configs/photos_ict.yaml)",
    )
    parser.add_argument(
        "--root",
        type=str | None,
        default=None,
        help="aflw2000, now: the data set's folder as downloaded; texture: a folder of photos; synthetic: where to "
        "render the faces (default OUT/data)",
    )
    parser.add_argument("--n", type=int, default=64, help="synthetic: faces rendered")
    parser.add_argument(
        "--identity",
        type=str | None,
        default="dlib",
        help="texture: identity similarity of photo and render under dlib's face descriptor (dlib, the default; "
        "the dlib extra), a TorchScript face-recognition network's file (images in [0, 255], (B, 3, H, W)), "
        "or none",
    )
    parser.add_argument("--out", type=str, required=True, help="folder for predictions, results and summary")
    parser.add_argument("--crop", type=Crop, default="detector", help="detector or truth (see the docs)")
    parser.add_argument(
        "--reannotated", type=str | None, default=None, help="AFLW2000-3D re-annotated 68 points .npy"
    )
    parser.add_argument(
        "--reannotated_names",
        type=str | None,
        default=None,
        help="text file of the photo names the --reannotated rows follow, one per line (needed for a subset)",
    )
    parser.add_argument(
        "--limit", type=int | None, default=None, help="only the first N items (sorted by name)"
    )
    return parser


def _stage(folder: Path, photos: dict[str, Path], landmarks: dict[str, object] | None) -> None:
    """Link ``photos`` (file name -> photo) into ``folder`` (copying where links are not allowed); beside each,
    the ``.pts`` of its ``landmarks`` (68, 2) when given (the crop then comes from them), else none."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, photo in photos.items():
        target = folder / name
        if not target.exists():
            try:
                os.symlink(photo.resolve(), target)
            except OSError:
                target.write_bytes(photo.read_bytes())
        pts = target.with_suffix(".pts")
        if landmarks is not None and name in landmarks:
            write_pts(pts, landmarks[name])
        elif pts.exists():
            pts.unlink()


def _predict(
    options,
    photos: Path,
    predictions: Path,
    extra: list[str],
    truth: bool,
    fit: bool = True,
    code_only: bool = True,
) -> None:
    """``facegen predict`` on ``photos`` into ``predictions``; ``truth``: crops from the landmark files beside the
    photos; ``fit`` False: no fitting; ``code_only``: MoFA writes only its coefficients."""
    configs = [arg for config in options.config for arg in ("--config", config)]
    # the configs first, then the user's extra arguments, then what this benchmark needs (later ones win)
    args = ["--ckpt_path", options.ckpt_path] if options.ckpt_path else []
    args += ["--data.init_args.predict_dir", str(photos)]
    args += ["--out", str(predictions)] + (["--outputs", "[code]"] if code_only else [])
    if truth:
        args += ["--data.init_args.predict_detector", "files"]
    if not fit:
        args += ["--model.init_args.fit", "null"]
    # photos are read by FaceDataModule (the configs' own settings kept): a config that trains on seeds (composite
    # texture models) switches to it, before the user's extra arguments set its options
    photo_data = ["--data", "facegen.data.FaceDataModule"]
    command = [sys.executable, "-m", "facegen.cli", "predict", *configs, *photo_data, *extra, *args]
    print("facegen evaluate: running", " ".join(["facegen", *command[3:]]), flush=True)
    if subprocess.run(command, check=False).returncode != 0:
        raise ConfigError("facegen predict failed (its error is above); fix it and rerun facegen evaluate")


def score_aflw2000(items, predictions: Path) -> tuple[list[dict], list[dict]]:
    """Per-item results and failures of the predictions in ``predictions`` (one folder per face)."""
    import numpy as np

    from facegen.evaluation.aflw2000 import (
        box_nme,
        box_nme_3d,
        head_pose_degrees,
        matched_face,
        photo_depth,
        pose_errors,
    )

    faces = read_code_records(predictions)
    results, failures = [], []
    for item in items:
        face = matched_face(faces.get(item.name, []), item.landmarks)
        if face is None:
            reason = "no face found" if item.name not in faces else "no face found at the annotated face"
            failures.append({"item": item.name, "reason": reason})
            continue
        predicted = np.asarray(face["landmarks_photo_px"], dtype=np.float64)
        pose = head_pose_degrees(np.asarray(face["camera_from_model"]["rotation"]))
        depth = photo_depth(face)
        nme_3d = None
        if depth is not None:
            nme_3d = box_nme_3d(
                np.column_stack([predicted, depth]), np.column_stack([item.landmarks, item.depth])
            )
        results.append(
            {
                "item": item.name,
                "face": face["key"],
                "nme": box_nme(predicted, item.landmarks),
                "nme_3d": nme_3d,
                "yaw_gt": item.pose[1],
                "pose_gt": list(item.pose),
                "pose_predicted": list(pose),
                "pose_error": list(pose_errors(pose, item.pose)),
            }
        )
    return results, failures


def markdown(summary: dict) -> str:
    """The summary as the table papers print (NME in %, MAE in degrees)."""

    def percent(value):
        return "–" if value is None else f"{100 * value:.2f}"

    def degrees(value):
        return "–" if value is None else f"{value:.2f}"

    header = (
        "| landmarks | NME [0°,30°) | NME [30°,60°) | NME [60°,90°] | NME balanced | NME all "
        "| yaw | pitch | roll | pose MAE | found |"
    )
    pose = (
        f"| {degrees(summary.get('mae_yaw'))} | {degrees(summary.get('mae_pitch'))} "
        f"| {degrees(summary.get('mae_roll'))} | {degrees(summary.get('mae_pose'))} "
        f"| {summary['found']}/{summary['items']} |"
    )
    rows = []
    for label, metric in (("2D", "nme"), ("3D", "nme_3d")):
        rows.append(
            f"| {label} | {percent(summary[f'{metric}_0_30'])} | {percent(summary[f'{metric}_30_60'])} "
            f"| {percent(summary[f'{metric}_60_90'])} | {percent(summary[f'{metric}_balanced'])} "
            f"| {percent(summary[metric])} " + (pose if metric == "nme" else "| | | | | |")
        )
    return "\n".join([header, "|" + " --- |" * 11, *rows]) + "\n"


def _aflw2000(options, out: Path, extra: list[str]) -> tuple[dict, dict, str]:
    from facegen.evaluation.aflw2000 import read_aflw2000, summarise

    if options.root is None:
        raise ConfigError("--root: give the AFLW2000-3D release's folder (image*.jpg + .mat)")
    items = read_aflw2000(options.root, options.reannotated, options.limit, options.reannotated_names)
    photos, predictions = out / "photos", out / "predictions"
    truth = options.crop == "truth"
    given = {item.photo.name: item.landmarks for item in items} if truth else None
    _stage(
        photos, {item.photo.name: item.photo for item in items}, given
    )  # the fit would otherwise refine onto the ground-truth landmarks
    _predict(options, photos, predictions, extra, truth=truth, fit=not truth)
    results, failures = score_aflw2000(items, predictions)
    summary = {"benchmark": "aflw2000", "crop": options.crop, **summarise(results, failures)}
    return (
        summary,
        {"results": results, "failures": failures},
        f"AFLW2000-3D, crop: {options.crop}\n\n{markdown(summary)}",
    )


def _model_settings(options) -> dict:
    """The evaluated model's settings (``face_model``, ``image_size``): the checkpoint's hyperparameters, or
    without a checkpoint the configs' ``model.init_args`` over MoFA's defaults."""
    import torch

    if options.ckpt_path is None:
        from facegen.commands.config_files import settings
        from facegen.tasks import MoFA

        return settings(options.config, "model", MoFA)
    path = options.ckpt_path
    if not Path(path).is_file():
        raise ConfigError(f"--ckpt_path {path} does not exist; give a MoFA checkpoint")
    try:
        return dict(torch.load(path, map_location="cpu", weights_only=True)["hyper_parameters"])
    except (KeyError, RuntimeError, OSError, ValueError, TypeError, pickle.UnpicklingError) as error:
        raise ConfigError(
            f"--ckpt_path {path}: not a MoFA checkpoint with its hyperparameters ({type(error).__name__})"
        ) from None


def _synthetic(options, out: Path, extra: list[str]) -> tuple[dict, dict, str]:
    from facegen.commands.synthetic_benchmark import (
        SyntheticSettings,
        render_benchmark,
        score_synthetic,
        summarise_synthetic,
    )
    from facegen.morphable.registry import load_face_model

    hparams = _model_settings(options)
    model = load_face_model(hparams["face_model"])
    settings = SyntheticSettings(n=options.n)
    photos = Path(options.root) if options.root else out / "data"
    truth = render_benchmark(model, int(hparams["image_size"]), settings, photos)
    summary: dict = {"benchmark": "synthetic", "faces": settings.n, "settings": str(settings)}
    details: dict = {}
    rows = []
    for name, fit in (("encoder", False), ("refined", True)):
        predictions = out / f"predictions_{name}"
        _predict(options, photos, predictions, extra, truth=True, fit=fit)
        results, failures = score_synthetic(model, truth, predictions)
        summary[name] = summarise_synthetic(results, failures)
        details[name] = {"results": results, "failures": failures}
        s = summary[name]
        if results:
            rows.append(
                f"| {name} | {s['vertex_error_mm']:.2f} | {s['vertex_error_ratio']:.3f} | "
                f"{100 * s['landmark_nme']:.2f} | {s['rotation_error_deg']:.2f} | {s['found']}/{s['items']} |"
            )
    header = "| | vertex error (mm) | ratio to mean face | landmark NME (%) | rotation error (°) | found |"
    table = "\n".join([header, "|" + " --- |" * 6, *rows]) + "\n"
    return (
        summary,
        details,
        f"Synthetic ground truth ({hparams['face_model']}, {settings.n} faces)\n\n{table}",
    )


def _now(options, out: Path, extra: list[str]) -> tuple[dict, dict, str]:
    from facegen.commands.now_benchmark import read_now, read_scans, score_now, write_challenge_layout
    from facegen.data.landmarks import read_pts
    from facegen.evaluation.now import summarise_now
    from facegen.morphable.registry import load_face_model

    if options.root is None:
        raise ConfigError(
            "--root: give the NoW download's folder (imagepathsvalidation.txt, iphone_pictures/, scans/)"
        )
    root = Path(options.root)
    items = read_now(root, options.limit)
    scans = read_scans(root, items)
    model = load_face_model(_model_settings(options)["face_model"])
    photos, predictions = out / "photos", out / "predictions"
    given = {  # landmark files you put beside the photos are used, as by facegen predict
        f"{i.name}.jpg": read_pts(i.photo.with_suffix(".pts"))
        for i in items
        if i.photo.with_suffix(".pts").is_file()
    }
    _stage(photos, {f"{item.name}.jpg": item.photo for item in items}, given)
    _predict(options, photos, predictions, extra, truth=False)
    meshes, failures = write_challenge_layout(items, predictions, model, out / "predicted_meshes")
    results, errors, missing = score_now(scans, items, meshes, model)
    summary = {"benchmark": "now", **summarise_now(errors, len(items), failures + missing)}
    rows = ""
    if errors:
        rows = f"| {summary['median_mm']:.3f} | {summary['mean_mm']:.3f} | {summary['std_mm']:.3f} | {summary['scored']}/{summary['items']} |\n"
    table = "| median (mm) | mean (mm) | std (mm) | scored |\n| --- | --- | --- | --- |\n" + rows
    details = {"results": results, "failures": failures, "not_scored": missing}
    report = f"NoW validation: predictions in the challenge's layout in {out / 'predicted_meshes'}\n\n{table}"
    return summary, details, report


def _texture(options, out: Path, extra: list[str]) -> tuple[dict, dict, str]:
    from facegen.commands.texture_benchmark import score_textures, summarise_textures

    if options.root is None or not Path(options.root).is_dir():
        raise ConfigError(
            f"--root {options.root}: give a folder of face photos to reconstruct the textures of"
        )
    predictions = out / "predictions"
    _predict(options, Path(options.root), predictions, extra, truth=False, code_only=False)
    results, failures = score_textures(predictions, options.identity)
    summary = {"benchmark": "texture", **summarise_textures(results, failures)}

    def cell(name: str, digits: int) -> str:
        value = summary.get(name)
        return "–" if value is None else f"{value:.{digits}f}"

    row = (
        f"| {cell('psnr', 2)} | {cell('ssim', 3)} | {cell('l1', 4)} | {cell('lpips', 4)} | "
        f"{cell('identity_cosine', 3)} | {cell('identity_distance', 3)} | {summary['found']} |"
    )
    table = (
        "| PSNR (dB) | SSIM | L1 | LPIPS | identity cosine | identity distance | faces |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n" + row + "\n"
    )
    return (
        summary,
        {"results": results, "failures": failures},
        f"Texture reconstruction (visible face pixels)\n\n{table}",
    )


def _numbers(summary: dict, prefix: str) -> dict[str, float]:
    """The numeric entries of ``summary`` (nested dicts flattened with ``/``)."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            flat.update(_numbers(value, f"{prefix}/{key}"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}/{key}"] = float(value)
    return flat


def log_summary(configs: list[str], summary: dict, benchmark: str) -> str | None:
    """Log ``summary``'s numbers as ``benchmark/<name>/...`` to the logger the configs set (``trainer.logger``;
    the last config that sets it wins); returns the logger's name, or None when they set none."""
    import yaml
    from lightning.pytorch.loggers import Logger

    setting = None
    for config in configs:
        trainer = (yaml.safe_load(Path(config).read_text()) or {}).get("trainer") or {}
        if "logger" in trainer:
            setting = trainer["logger"]
    if not setting:
        return None
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--logger", type=Logger | list[Logger] | None, default=None)
    loggers = parser.instantiate(parser.parse_object({"logger": setting})).logger
    names = []
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        logger.log_metrics(_numbers(summary, f"benchmark/{benchmark}"), step=0)
        logger.finalize("success")
        names.append(type(logger).__name__)
    return ", ".join(names)


def run(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    options = build_parser().parse_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    for setting, value in (("--n", options.n), ("--limit", options.limit)):
        if value is not None and value < 1:
            raise ConfigError(f"{setting} must be at least 1, got {value}")
    out = Path(options.out)
    benchmark = {"aflw2000": _aflw2000, "now": _now, "synthetic": _synthetic, "texture": _texture}[
        options.benchmark
    ]
    summary, details, report = benchmark(options, out, extra)
    write_text_atomic(out / "results.json", json.dumps(details, indent=1))
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    write_text_atomic(out / "summary.md", report)
    print(report, end="")
    logged = log_summary(options.config, summary, options.benchmark)
    if logged:
        print(f"facegen evaluate: summary logged to {logged} (the config's trainer.logger)")
    return 0
