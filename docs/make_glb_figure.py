"""The picture of docs/predict.md's "Use the results": a photo's ``face.glb`` (``facegen predict --outputs "[glb,
code]"``, default config configs/photos_ict.yaml) read back from the file and rendered as a viewer shows it, at
the fitted expression and with three of its morph targets set by name (jaw open, smile, eyes closed).

    pip install scikit-image pygltflib   # the default photo (scikit-image's astronaut) and the GLB reader
    python docs/make_glb_figure.py [--photo PHOTO] [--config CONFIG] [--out docs/glb_figure.jpg] [-- PREDICT ARGS]

Prints one JSON line: the figure's path and the morph targets each panel moved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_figure import HEIGHT, predicted_photo, row, write_figure  # noqa: E402 (beside this script)

from facegen.geometry.camera import MODEL_TO_OPENCV  # noqa: E402
from facegen.render import RasterSettings, Renderer  # noqa: E402

#: Panels after the fitted one: a label and the morph targets set to 1, by the names of ICT-FaceKit's (ARKit) or
#: the built-in model's expressions (whichever the file has).
POSES = (
    ("jaw open", ("jawOpen", "jaw_open")),
    ("smile", ("mouthSmile_L", "mouthSmile_R", "smile_left", "smile_right")),
    ("eyes closed", ("eyeBlink_L", "eyeBlink_R", "blink_left", "blink_right")),
)


def read_glb(data: bytes):
    """A GLB file's bytes parsed by pygltflib, and a function giving accessor ``i`` as an array ((count, width),
    or (count,) for scalars)."""
    import pygltflib

    gltf = pygltflib.GLTF2.load_from_bytes(data)
    blob = gltf.binary_blob()
    widths = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
    types = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_INT: np.uint32}

    def accessor(index: int) -> np.ndarray:
        spec = gltf.accessors[index]
        view = gltf.bufferViews[spec.bufferView]
        width = widths[spec.type]
        values = np.frombuffer(blob, types[spec.componentType], spec.count * width, view.byteOffset)
        return values.reshape(spec.count, width) if width > 1 else values

    return gltf, accessor


class GlbFace:
    """A face GLB read back with pygltflib: positions (N, 3) metres, triangles (F, 3), UVs (N, 2), the texture
    (H, W, 3) uint8 or None, morph-target offsets (K, N, 3), their names and default weights (K,)."""

    def __init__(self, path: Path) -> None:
        gltf, array = read_glb(Path(path).read_bytes())
        mesh = gltf.meshes[0]
        primitive = mesh.primitives[0]
        self.positions = array(primitive.attributes.POSITION).astype(np.float64)
        self.triangles = array(primitive.indices).reshape(-1, 3).astype(np.int64)
        self.uv = (
            array(primitive.attributes.TEXCOORD_0) if primitive.attributes.TEXCOORD_0 is not None else None
        )
        self.targets = np.stack(
            [array(t["POSITION"]) for t in primitive.targets or []] or [self.positions[:0]]
        )
        self.names = list((mesh.extras or {}).get("targetNames", []))
        self.weights = np.asarray(mesh.weights or [], np.float64)
        self.texture = None
        if gltf.images:
            view = gltf.bufferViews[gltf.images[0].bufferView]
            data = np.frombuffer(gltf.binary_blob(), np.uint8, view.byteLength, view.byteOffset)
            self.texture = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()

    def shaped(self, weights: np.ndarray) -> np.ndarray:
        """(N, 3) the mesh at morph-target ``weights`` (K,)."""
        return self.positions + np.tensordot(weights, self.targets, 1) if len(weights) else self.positions


def render(face: GlbFace, positions: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """``positions`` of ``face`` from the front (glTF's +Z toward the viewer), textured, on white."""
    vertices = torch.tensor(positions - centre, dtype=torch.float32)
    focal, distance = 4.0 * HEIGHT, 4.0 * HEIGHT / (0.47 * HEIGHT) * radius
    K = torch.tensor([[focal, 0, (HEIGHT - 1) / 2], [0, focal, (HEIGHT - 1) / 2], [0, 0, 1.0]])[None]
    camera = vertices @ MODEL_TO_OPENCV.T + torch.tensor([0.0, 0.0, distance])
    faces = torch.from_numpy(face.triangles)
    renderer = Renderer(RasterSettings(image_size=(HEIGHT, HEIGHT)))
    if face.texture is None or face.uv is None:
        out = renderer(camera[None], faces, K, colours=torch.full_like(camera, 0.7)[None], background=1.0)
    else:
        texture = torch.from_numpy(face.texture).permute(2, 0, 1)[None].float() / 255
        uv = torch.from_numpy(
            face.uv * np.float32([1, -1]) + np.float32([0, 1])
        )  # glTF -> facegen's UV origin
        out = renderer(camera[None], faces, K, texture=texture, uv_coords=uv, uv_faces=faces, background=1.0)
    return (out.image[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def figure(path: Path) -> tuple[np.ndarray, list[list[str]]]:
    """The panels of the GLB at ``path``: fitted, then each of :data:`POSES` it can show; and their targets."""
    face = GlbFace(path)
    centre = (face.positions.max(0) + face.positions.min(0)) / 2
    radius = float(np.linalg.norm(face.positions - centre, axis=1).max())
    panels, moved = [render(face, face.shaped(face.weights), centre, radius)], [[]]
    for _, names in POSES:
        chosen = [face.names.index(name) for name in names if name in face.names]
        if chosen:
            weights = face.weights.copy()
            weights[chosen] = 1.0
            panels.append(render(face, face.shaped(weights), centre, radius))
            moved.append([face.names[i] for i in chosen])
    return row(panels), moved


def main(argv: list[str] | None = None) -> None:
    outputs = ["--outputs", "[glb, code]"]
    with predicted_photo(argv, __doc__, "docs/glb_figure.jpg", outputs) as (args, _, face):
        picture, moved = figure(face / "face.glb")
    write_figure(args.out, picture)
    print(json.dumps({"figure": str(args.out), "face": face.name, "panels": moved}))


if __name__ == "__main__":
    main()
