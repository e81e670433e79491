"""``facegen model``: convert face models to facegen's canonical .npz, describe them, download ICT-FaceKit.
Bad files and settings raise facegen's user errors, which ``facegen`` prints as one line."""

from __future__ import annotations

import json
from pathlib import Path

from jsonargparse import ArgumentParser

from facegen.errors import ConfigError
from facegen.morphable.model import MorphableModel

HELP = "convert, inspect and download face models"
FORMAT_CHOICES = ["bfm2009", "bfm-front", "bfm2017", "flame", "ict", "npz", "builtin"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="facegen model", description=HELP)
    commands = parser.add_subcommands(dest="command")

    convert = ArgumentParser(description="Convert a downloaded face model to facegen's canonical .npz.")
    convert.add_argument("format", choices=FORMAT_CHOICES, help="source format")
    convert.add_argument("--source", type=str, default=None, help="model file or folder as downloaded")
    convert.add_argument("--out", type=str, required=True, help="canonical .npz to write")
    convert.add_argument(
        "--landmarks",
        type=str,
        default=None,
        help="68 landmark indices (.npy/.txt) / FLAME embedding file; ICT: 'calibrated' (default: re-chosen "
        "for 2D detectors), 'ict' (the toolkit's own) or an indices file",
    )
    convert.add_argument("--region", type=str, default=None, help="ICT region: head (default) or face")
    convert.add_argument(
        "--n-shape", "--n_shape", type=int, default=None, help="keep this many shape components"
    )
    convert.add_argument("--n-expression", "--n_expression", type=int, default=None)
    convert.add_argument(
        "--uv",
        type=str,
        default=None,
        help="UV layout for the model: per-vertex (V, 2) or per-corner (F, 3, 2) .npy/.mat, or an .obj of its topology",
    )
    convert.add_argument("--n-albedo", "--n_albedo", type=int, default=None)
    convert.add_argument(
        "--dense-landmarks",
        "--dense_landmarks",
        type=str,
        default=None,
        help="register MediaPipe's 468-point face mesh onto the model: 'mediapipe' (its canonical mesh, "
        "downloaded once into the cache) or that mesh's .obj",
    )
    commands.add_subcommand("convert", convert, help="convert a model file to facegen's .npz")

    info = ArgumentParser(description="Describe a face model: 'builtin' or a canonical .npz.")
    info.add_argument("model", type=str, help="'builtin' or a .npz written by `facegen model convert`")
    info.add_argument("--json", type=bool, default=False, help="print JSON instead of text")
    commands.add_subcommand("info", info, help="describe a face model")

    download = ArgumentParser(description="Download an openly licensed face model and convert it.")
    download.add_argument("name", choices=["ict"], help="ict = ICT-FaceKit (MIT)")
    download.add_argument("--out", type=str, default="models/ict_head.npz", help="canonical .npz to write")
    download.add_argument(
        "--cache", type=str, default=None, help="download folder (default ~/.cache/facegen)"
    )
    download.add_argument("--region", type=str, default="head", help="head or face")
    commands.add_subcommand("download", download, help="download ICT-FaceKit and convert it")
    return parser


def describe(model: MorphableModel, path: Path | None = None) -> dict:
    """Counts, units, bounding box, landmarks, albedo/UV presence and size on disk of ``model``."""
    lower, upper = model.mean.min(0).values.tolist(), model.mean.max(0).values.tolist()
    return {
        "name": model.name,
        "vertices": model.num_vertices,
        "triangles": model.num_faces,
        "shape_components": model.n_shape,
        "expression_components": model.n_expression,
        "albedo_components": model.n_albedo if model.has_albedo else None,
        "has_albedo": model.has_albedo,
        "has_uv": model.has_uv,
        "uv_coords": None if not model.has_uv else model.uv_coords.shape[0],
        "units": model.units,
        "bbox_min": [round(x, 4) for x in lower],
        "bbox_max": [round(x, 4) for x in upper],
        "size": [round(b - a, 4) for a, b in zip(lower, upper, strict=True)],
        "landmarks": len(model.landmark_indices),
        "unique_landmark_vertices": int(model.landmark_indices.unique().numel()),
        "masks": {name: int(model.mask(name).sum()) for name in model.mask_names},
        "expression_names": model.expression_names,
        "dense_landmarks": None
        if model.dense_scheme is None
        else f"{model.dense_scheme} ({model.num_dense})",
        "file_bytes": None if path is None else path.stat().st_size,
    }


def _print_info(info: dict) -> None:
    for key, value in info.items():
        if key == "expression_names" and value:
            value = f"{len(value)} ({', '.join(value[:4])}, ...)"
        print(f"{key:>24}: {value}")


def run(argv: list[str]) -> int:
    from facegen.morphable.download import cache_folder, fetch_ict
    from facegen.morphable.registry import convert, load_face_model

    parser = build_parser()
    config = parser.parse_args(argv)
    command = config.command
    options = config[command]
    if command == "convert":
        model = convert(options.format, options.source, landmarks=options.landmarks, region=options.region)
        model = model.truncate(options.n_shape, options.n_expression, options.n_albedo)
        if options.uv:
            from facegen.morphable.uv_files import read_uv_layout

            layout = read_uv_layout(options.uv, model.faces.numpy(), model.num_vertices)
            model = model.with_uv(layout.uv_coords, layout.uv_faces)
            print(layout.report)
        if options.dense_landmarks:
            from facegen.morphable.dense import (
                dense_report,
                fetch_canonical_mesh,
                read_canonical_mesh,
                with_dense_landmarks,
            )

            given = options.dense_landmarks
            path = fetch_canonical_mesh(cache_folder()) if given == "mediapipe" else Path(given)
            if not path.is_file():
                raise ConfigError(
                    f"--dense-landmarks {given}: give 'mediapipe' or the path of MediaPipe's canonical_face_model.obj"
                )
            model, found = with_dense_landmarks(model, read_canonical_mesh(path))
            print(dense_report(model, found))
        out = model.save(options.out)
        print(f"wrote {out} ({model})")
    elif command == "info":
        model = load_face_model(options.model)
        path = None if options.model == "builtin" else Path(options.model)
        info = describe(model, path)
        print(json.dumps(info, indent=2)) if options.json else _print_info(info)
    else:
        folder = fetch_ict(
            Path(options.cache) if options.cache else cache_folder(), options.out, options.region
        )
        model = convert("ict", folder, region=options.region)
        out = model.save(options.out)
        print(f"wrote {out} ({model})")
    return 0
