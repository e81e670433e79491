"""The README's picture: photo | fitted overlay | textured mesh from the front and turned | UV texture, made by
``facegen predict`` with a photo config (default: configs/photos_ict.yaml, ICT-FaceKit, no training).

    pip install scikit-image     # only for the default photo: scikit-image's astronaut (NASA, public domain)
    python docs/make_figure.py [--photo PHOTO] [--config CONFIG] [--out docs/figure.jpg] [-- PREDICT ARGS]

The face is found by the config's detector, or read from a landmark file beside ``--photo`` (``.pts``, dlib
XML). Arguments after ``--`` go to ``facegen predict`` (e.g. ``--model.init_args.face_model ict_face.npz``).
Prints one JSON line: the figure's path and the face it shows.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch

from facegen.cli import main as facegen
from facegen.export import read_obj
from facegen.geometry.camera import MODEL_TO_OPENCV
from facegen.geometry.rotations import euler_to_matrix
from facegen.render import RasterSettings, Renderer

HEIGHT = 256  # pixels per panel
GAP = 6


def default_photo(folder: Path) -> Path:
    try:
        from skimage.data import astronaut
    except ImportError:
        sys.exit("make_figure.py: give --photo PHOTO, or pip install scikit-image for the default photo")
    path = folder / "astronaut.png"
    cv2.imwrite(str(path), astronaut()[..., ::-1])
    return path


def stage(photo: Path, folder: Path) -> None:
    """Copy ``photo`` and the landmark files beside it into ``folder``."""
    folder.mkdir(parents=True)
    shutil.copy(photo, folder / photo.name)
    for side in [photo.with_suffix(".pts"), *photo.parent.glob("*.xml")]:
        if side.is_file():
            shutil.copy(side, folder / side.name)


def render_views(face: Path, yaws: tuple[float, ...]) -> list[np.ndarray]:
    """The textured mesh of a predicted face (model space, lit by its own texture) turned by each yaw
    (degrees), framed to ``HEIGHT``² pixels."""
    mesh = read_obj(face / "textured.obj")
    texture = cv2.imread(str(face / "texture.png"))[..., ::-1].copy()
    vertices = torch.tensor(np.asarray(mesh["vertices"]), dtype=torch.float32)
    faces = torch.tensor(np.asarray(mesh["faces"]), dtype=torch.long)
    uv = torch.tensor(np.asarray(mesh["uv"]), dtype=torch.float32)
    uv_faces = torch.tensor(np.asarray(mesh["uv_faces"]), dtype=torch.long)
    centre = (vertices.max(0).values + vertices.min(0).values) / 2
    radius = float((vertices - centre).norm(dim=1).max())
    focal, distance = 4.0 * HEIGHT, 4.0 * HEIGHT / (0.47 * HEIGHT) * radius  # the head fills about 94%
    K = torch.tensor([[focal, 0, (HEIGHT - 1) / 2], [0, focal, (HEIGHT - 1) / 2], [0, 0, 1.0]])[None]
    image = torch.from_numpy(texture).permute(2, 0, 1)[None].float() / 255
    renderer = Renderer(RasterSettings(image_size=(HEIGHT, HEIGHT)))
    views = []
    for yaw in yaws:
        turn = euler_to_matrix(torch.tensor([[0.0, math.radians(yaw), 0.0]]))[0]
        camera = (vertices - centre) @ (MODEL_TO_OPENCV @ turn).T + torch.tensor([0.0, 0.0, distance])
        out = renderer(camera[None], faces, K, texture=image, uv_coords=uv, uv_faces=uv_faces, background=1.0)
        views.append((out.image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8))
    return views


def crop_around(image: np.ndarray, points: np.ndarray, margin: float = 0.6) -> np.ndarray:
    """A square crop of ``image`` around ``points`` (N, 2) with ``margin`` of their size on each side, resized to
    ``HEIGHT``²."""
    low, high = points.min(0), points.max(0)
    half = (high - low).max() * (0.5 + margin)
    x0, y0 = (low + high) / 2 - half
    matrix = np.array(
        [
            [HEIGHT / (2 * half), 0, -x0 * HEIGHT / (2 * half)],
            [0, HEIGHT / (2 * half), -y0 * HEIGHT / (2 * half)],
        ]
    )
    return cv2.warpAffine(image, matrix, (HEIGHT, HEIGHT), flags=cv2.INTER_AREA, borderValue=(255, 255, 255))


def figure(photo: Path, face: Path) -> np.ndarray:
    record = json.loads((face / "code.json").read_text())
    points = np.asarray(record["landmarks_photo_px"])
    original = cv2.imread(str(photo))[..., ::-1]
    overlay = cv2.imread(str(face / "overlay.jpg"))[..., ::-1]
    texture = cv2.resize(cv2.imread(str(face / "texture.png"))[..., ::-1], (HEIGHT, HEIGHT), cv2.INTER_AREA)
    panels = [
        crop_around(original, points),
        crop_around(overlay, points),
        *render_views(face, (0.0, 40.0)),
        texture,
    ]
    return row(panels)


def row(panels: list[np.ndarray]) -> np.ndarray:
    """``panels`` (each ``HEIGHT``² RGB) side by side, ``GAP`` white pixels apart."""
    gap = np.full((HEIGHT, GAP, 3), 255, np.uint8)
    return np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)


@contextmanager
def predicted_photo(argv: list[str] | None, description: str, out: str, outputs: list[str]):
    """Parse a figure script's command line (``--photo``, ``--config``, ``--out`` with default ``out``; after
    ``--``, more ``facegen predict`` arguments), run ``facegen predict`` on the photo (staged with its landmark
    files) with ``outputs``; the context is (arguments, the staged photo, the first predicted face's folder), which
    exist until it ends."""
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photo", type=Path, help="default: scikit-image's astronaut")
    parser.add_argument("--config", default="configs/photos_ict.yaml")
    parser.add_argument("--out", type=Path, default=Path(out))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        photo = args.photo or default_photo(scratch)
        stage(photo, scratch / "photos")
        predicted = scratch / "predicted"
        command = [
            "predict",
            "--config",
            args.config,
            "--data.init_args.predict_dir",
            str(scratch / "photos"),
        ]
        settings = ["--out", str(predicted), "--trainer.enable_progress_bar", "false", *outputs, *extra]
        code = facegen([*command, *settings])
        faces = sorted(p.parent for p in predicted.glob("*/code.json"))
        if code or not faces:
            sys.exit(f"{Path(sys.argv[0]).name}: facegen predict found no face in {photo} (exit code {code})")
        yield args, scratch / "photos" / photo.name, faces[0]


def write_figure(out: Path, picture: np.ndarray) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), picture[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90]):
        sys.exit(f"--out {out}: cannot write an image there (use .jpg or .png)")


def main(argv: list[str] | None = None) -> None:
    with predicted_photo(argv, __doc__, "docs/figure.jpg", []) as (args, photo, face):
        picture = figure(photo, face)
    write_figure(args.out, picture)
    record = {"figure": str(args.out), "photo": photo.name, "face": face.name, "size": picture.shape[:2]}
    print(json.dumps(record))


if __name__ == "__main__":
    main()
