"""Everything written for one reconstructed face, in its own folder:

- ``reflectance.obj`` / ``shaded.obj``: the mesh with per-vertex reflectance or shaded colours;
- ``textured.obj`` + ``textured.mtl`` + ``texture.png``: the photo unwrapped into the model's UV layout (hidden
  texels from the mirrored side when the layout is symmetric, else from the shaded model), and
  ``visibility.png`` (how well each texel was seen);
- ``albedo.obj`` + ``albedo.mtl`` + ``albedo.png``: the model's reflectance baked into the UV layout;
- ``code.npz`` (every code part, intrinsics, landmarks) and ``code.json`` (readable: pose in degrees, translation,
  SH light, shape/expression, 68 landmarks in original-photo pixels in both conventions: ``landmarks_photo_px``
  the model's 68 vertices projected, occluded points where they are, as AFLW2000-3D annotates them (3D
  convention), and ``landmarks_2d_photo_px`` with the jaw of a turned face on its visible outline, as 300-W
  annotates it (2D convention));
- ``overlay.jpg``: the render of the face proper and the landmarks (detected green, fitted red) on the original
  photo;
- ``depth.png`` and ``normals.png``: camera-frame depth (16-bit, 0.1 mm steps) and normals of the fit, per crop
  pixel, and ``depth_preview.png``, the depth as 8-bit grey (nearest white) for viewers.

The overlay and the texture's photo colours cover only the face proper (the model's ``skin`` vertex mask where
it has one: ICT-FaceKit's narrow face area, without its neck plate), so hands, collars and seats in front of the
neck are neither painted over nor unwrapped into the texture; the rest of the texture is filled as hidden texels
are.

``code.json`` also holds the 68 landmarks in 3D (camera frame and model space, model units).

Meshes are in model space (the face model's units and axes); ``code.json`` gives the pose that places them in
the camera frame of the crop.

Why one module over 400 lines: every file written for one face, from one FaceResult; each writer is a short
function."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from facegen.atomic import write_bytes_atomic, write_text_atomic
from facegen.export.files import png_bytes, write_jpeg_atomic, write_png_atomic
from facegen.export.gltf import GltfMesh, glb_bytes
from facegen.export.obj import write_textured_objs, write_vertex_colour_obj
from facegen.export.outputs import DEFAULT_OUTPUTS, Output
from facegen.export.pictures import draw_landmarks, to_uint8
from facegen.geometry.affine import apply_affine, invert_affine
from facegen.geometry.normals import vertex_normals
from facegen.morphable.model import MorphableModel
from facegen.render.settings import Fragments, covered_pixels
from facegen.texture.unwrap import dilate, fill_hidden, unwrap_photo
from facegen.texture.uv import UVLayout

#: Written last, whatever the outputs: a face folder with this file is complete (reruns skip it unless told to
#: overwrite). It holds the readable code, pose and landmarks.
DONE_FILE = "code.json"
#: The textured meshes: texture output -> its mesh's file stem (each mesh's material maps ``<output>.png``).
TEXTURED_MESHES: dict[Output, str] = {"texture": "textured", "albedo": "albedo"}


@dataclass
class ModelFiles:
    """What the files of every face need from the face model: triangles (F, 3), the UV layout (None without
    one), whether it is left-right symmetric, UV coordinates and triangles, expression names, the 68 landmark
    vertex indices, millimetres per model unit, the dense landmarks (scheme, corner vertices (N, 3) and
    barycentric weights (N, 3); None without them), and ``face_triangles`` (F,) bool, the triangles of the face
    proper (all corners in the model's ``skin`` mask; None: every triangle) and ``photo_texels`` (S, S) bool,
    the UV texels of those triangles (None: every texel may take photo colours); ``expression_deltas`` (K, V, 3)
    float32: the vertex offsets of one unit of each expression coefficient (the GLB's morph targets; None
    without expressions)."""

    faces: np.ndarray
    layout: UVLayout | None
    symmetric: bool
    uv: tuple[np.ndarray, np.ndarray] | None
    expression_names: list[str] | None
    landmark_indices: np.ndarray
    mm_per_unit: float
    dense: tuple[str, np.ndarray, np.ndarray] | None = None
    face_triangles: np.ndarray | None = None
    photo_texels: Tensor | None = None
    expression_deltas: np.ndarray | None = None

    def gltf_mesh(
        self, neutral: np.ndarray, normals: np.ndarray, weights: np.ndarray, texture_png: bytes | None
    ) -> GltfMesh:
        """A GLB mesh of this model: the ``neutral`` vertices (V, 3, model space) under the expression morph
        targets at ``weights`` (K,; a model without expressions gets none), unit ``normals`` (V, 3) of the mesh as
        shown, and the PNG ``texture_png`` (None: untextured)."""
        count = len(weights) if self.expression_deltas is not None else 0
        uv, uv_faces = self.uv if self.uv is not None else (None, None)
        names = list((self.expression_names or [])[:count]) or [f"expression_{k}" for k in range(count)]
        return GltfMesh(
            vertices=neutral,
            normals=normals,
            faces=self.faces,
            uv=uv,
            uv_faces=uv_faces,
            texture_png=texture_png,
            targets=self.expression_deltas[:count] if count else None,
            target_names=names,
            weights=np.asarray(weights, np.float64)[:count],
            metres_per_unit=self.mm_per_unit / 1000.0,
        )

    def dense_points(self, vertices: np.ndarray) -> np.ndarray | None:
        """(N, 3) dense landmarks on a mesh's ``vertices`` (V, 3), or None without dense landmarks."""
        if self.dense is None:
            return None
        _, corners, weights = self.dense
        return (vertices[corners] * weights[..., None]).sum(1)

    @classmethod
    def of(cls, model: MorphableModel, texture_size: int) -> ModelFiles:
        layout = uv = None
        if model.has_uv:
            uv = (model.uv_coords.cpu().numpy(), model.uv_faces.cpu().numpy())
            layout = UVLayout(model.faces, model.uv_coords, model.uv_faces, texture_size)
        symmetric = layout is not None and layout.is_symmetric(model.mean)
        skin = "skin" in model.mask_names
        face_triangles = model.mask("skin")[model.faces].all(1).cpu().numpy() if skin else None
        return cls(
            model.faces.cpu().numpy(),
            layout,
            symmetric,
            uv,
            model.expression_names,
            model.landmark_indices.cpu().numpy(),
            model.mm_per_unit,
            None
            if model.dense_scheme is None
            else (
                model.dense_scheme,
                model.faces[model.dense_triangles].cpu().numpy(),
                model.dense_barycentrics.cpu().double().numpy(),
            ),
            face_triangles,
            None
            if face_triangles is None or layout is None
            else layout.mask & torch.from_numpy(face_triangles)[layout.pix_to_face.clamp(min=0).cpu()],
            None
            if model.n_expression == 0
            else (model.expression_basis * model.expression_std[:, None, None]).float().cpu().numpy(),
        )


@dataclass
class FaceResult:
    """One reconstructed face, all tensors for B = 1 on one device.

    code: {part: (1, k)}; vertices_model (1, V, 3) model space; vertices, normals (1, V, 3) camera frame;
    camera_rotation (1, 3, 3) and camera_translation (1, 3): model space -> camera frame;
    reflectance, shaded (1, V, 3) colours in [0, 1]; landmarks (1, 68, 2) fitted, crop pixels (the model's 68
    vertices, 3D convention) and landmarks_2d (1, 68, 2) the same in the 2D convention (jaw on the visible
    outline); K (1, 3, 3);
    crop (1, 3, S, S) in [0, 1]; render (1, 3, S, S) and render_mask (1, 1, S, S) and the render's
    ``fragments`` (reused for the texture's occlusion test); meta: the batch's sample
    metadata (source, face_index, transform photo -> crop, photo_path when predicting from photos);
    refinement: (steps, this face's objective before, after) or None when not refined.
    """

    key: str
    code: dict[str, Tensor]
    vertices_model: Tensor
    camera_rotation: Tensor
    camera_translation: Tensor
    vertices: Tensor
    normals: Tensor
    reflectance: Tensor
    shaded: Tensor
    landmarks: Tensor
    landmarks_2d: Tensor
    detected: Tensor
    K: Tensor
    crop: Tensor
    render: Tensor | None
    render_mask: Tensor | None
    fragments: Fragments | None
    meta: dict
    photo: np.ndarray | None
    refinement: tuple[int, float, float] | None


def _to_photo(meta: dict) -> np.ndarray | None:
    """(2, 3) crop pixels -> photo pixels, or None without a usable recorded transform (absent, or not a finite,
    invertible 2x3 matrix: metadata from a shard is untrusted)."""
    try:
        transform = np.asarray(meta.get("transform"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if transform.shape != (2, 3) or not np.isfinite(transform).all():
        return None
    if abs(np.linalg.det(transform[:, :2])) < 1e-9:
        return None
    return invert_affine(transform)


def write_face(
    folder: Path, face: FaceResult, model: ModelFiles, outputs: Collection[Output] = DEFAULT_OUTPUTS
) -> None:
    """Write the chosen ``outputs`` of ``face`` into ``folder`` (created), then ``code.json`` (always, last).
    Textured meshes need the model's UV ``layout``."""
    folder.mkdir(parents=True, exist_ok=True)
    faces, layout, uv = model.faces, model.layout, model.uv
    vertices = face.vertices_model[0].cpu().numpy()
    if "mesh" in outputs:
        write_vertex_colour_obj(
            folder / "reflectance.obj", vertices, faces, face.reflectance[0].cpu().numpy()
        )
        write_vertex_colour_obj(folder / "shaded.obj", vertices, faces, face.shaded[0].cpu().numpy())
    to_photo = _to_photo(face.meta)
    texture = None
    if layout is not None and uv is not None and {"texture", "albedo", "glb"} & set(outputs):
        texture = _write_textures(
            folder, face, layout, model.symmetric, to_photo, outputs, model.photo_texels
        )
        meshes = {
            folder / f"{mesh}.obj": f"{name}.png" for name, mesh in TEXTURED_MESHES.items() if name in outputs
        }
        write_textured_objs(meshes, vertices, faces, uv[0], uv[1])
    if "glb" in outputs:
        write_bytes_atomic(folder / "face.glb", glb_bytes(_gltf_mesh(face, model, texture)))
    if "overlay" in outputs:
        write_jpeg_atomic(folder / "overlay.jpg", _overlay(face, to_photo, model.face_triangles))
    if "maps" in outputs:
        _write_maps(folder, face, faces, model.mm_per_unit)
    landmarks_crop = face.landmarks[0].cpu().numpy()
    landmarks_photo = landmarks_crop if to_photo is None else apply_affine(to_photo, landmarks_crop)
    dense = _dense_landmarks(face, model, to_photo)
    if "code" in outputs:
        arrays = {f"code_{k}": v[0].cpu().numpy() for k, v in face.code.items()}
        arrays.update(
            K=face.K[0].cpu().numpy(), landmarks_crop=landmarks_crop, landmarks_photo=landmarks_photo
        )
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_bytes_atomic(folder / "code.npz", buffer.getvalue())
    landmarks_2d = face.landmarks_2d[0].cpu().numpy()
    record = _readable(face, landmarks_photo, model)
    record["landmarks_2d_photo_px"] = np.round(
        landmarks_2d if to_photo is None else apply_affine(to_photo, landmarks_2d), 2
    ).tolist()
    if dense is not None:
        record["dense_landmarks"] = dense
    write_text_atomic(folder / DONE_FILE, json.dumps(record, indent=1))


def _dense_landmarks(face: FaceResult, model: ModelFiles, to_photo: np.ndarray | None) -> dict | None:
    """The model's dense landmarks on the fitted face: in model space, in the camera frame and in photo pixels."""
    camera = model.dense_points(face.vertices[0].cpu().double().numpy())
    if camera is None:
        return None
    projected = camera @ face.K[0].cpu().double().numpy().T
    pixels = projected[:, :2] / projected[:, 2:]
    return {
        "scheme": model.dense[0],
        "model": model.dense_points(face.vertices_model[0].cpu().double().numpy()).round(5).tolist(),
        "camera": camera.round(5).tolist(),
        "photo_px": np.round(pixels if to_photo is None else apply_affine(to_photo, pixels), 2).tolist(),
    }


def _write_maps(folder: Path, face: FaceResult, faces: np.ndarray, mm_per_unit: float) -> None:
    """``depth.png`` (16-bit: camera-frame depth in 0.1 mm steps, 0 where no face) and ``normals.png`` (camera-frame
    unit normals, OpenCV axes, as (n + 1) / 2 in RGB; black where no face), in crop pixels. Only the covered
    pixels are computed."""
    fragments = face.fragments
    height, width = fragments.pix_to_face.shape[-2:]
    pixels, packed = covered_pixels(fragments.pix_to_face[:1].cpu())
    depth = np.zeros(height * width, np.uint16)
    depth_mm = fragments.zbuf[0].cpu().reshape(-1)[pixels].double().numpy() * mm_per_unit * 10
    depth[pixels.numpy()] = np.clip(np.round(depth_mm), 1, 65535)
    write_png_atomic(folder / "depth.png", depth.reshape(height, width))
    write_png_atomic(folder / "depth_preview.png", depth_preview(depth).reshape(height, width))
    corners = torch.from_numpy(faces)[packed % len(faces)]  # (N, 3) vertex indices
    bary = fragments.bary[0].cpu().reshape(-1, 3)[pixels]  # (N, 3)
    normal = torch.nn.functional.normalize(
        torch.einsum("nk,nkc->nc", bary, face.normals[0].cpu()[corners]), dim=-1
    )
    colour = np.zeros((height * width, 3), np.uint8)
    colour[pixels.numpy()] = ((normal + 1) / 2 * 255).round().clamp(0, 255).byte().numpy()
    write_png_atomic(folder / "normals.png", colour.reshape(height, width, 3))


def depth_preview(depth: np.ndarray) -> np.ndarray:
    """8-bit grey of a 16-bit depth map (0 = no face): the face's own depth range stretched over 255 (nearest)
    to 55 (farthest), so a viewer shows the shape; 0 stays black."""
    preview = np.zeros(depth.shape, np.uint8)
    covered = depth > 0
    if covered.any():
        near, far = float(depth[covered].min()), float(depth[covered].max())
        share = (far - depth[covered]) / max(far - near, 1.0)
        preview[covered] = np.round(55 + 200 * share).astype(np.uint8)
    return preview


def _write_textures(
    folder: Path,
    face: FaceResult,
    layout: UVLayout,
    symmetric: bool,
    to_photo: np.ndarray | None,
    outputs: Collection[Output],
    photo_texels: Tensor | None = None,
) -> np.ndarray | None:
    """texture.png (+ visibility.png) from the original photo when available (full resolution), else from the
    crop, at ``photo_texels`` (S, S) bool only when given (the rest filled as hidden texels); albedo.png from the
    reflectance; each when chosen in ``outputs``. Returns the photo texture (S, S, 3) uint8 when it was made
    (``texture`` or ``glb`` chosen), else None."""
    fallback, albedo = layout.bake(torch.cat([face.shaded, face.reflectance], -1)).split(3, 1)
    if not {"texture", "glb"} & set(outputs):
        write_png_atomic(folder / "albedo.png", to_uint8(dilate(albedo, layout)[0]))
        return None
    size = tuple(face.crop.shape[-2:])
    if face.photo is not None and to_photo is not None:
        region, matrix = _photo_region(np.asarray(face.photo), to_photo, size)
        photo = torch.from_numpy(region).to(face.crop).permute(2, 0, 1).unsqueeze(0) / 255
        matrix = torch.from_numpy(matrix).to(face.crop).unsqueeze(0)
    else:
        photo, matrix = face.crop, None
    unwrapped = unwrap_photo(layout, photo, face.vertices, face.normals, face.K, size, matrix, face.fragments)
    if photo_texels is not None:
        unwrapped = unwrapped._replace(
            visibility=unwrapped.visibility * photo_texels.to(unwrapped.visibility)
        )
    texture = fill_hidden(unwrapped, fallback, symmetric)
    if "albedo" in outputs:  # both grown in one pass
        albedo, texture = dilate(torch.cat([albedo, texture], 1), layout).split(3, 1)
        write_png_atomic(folder / "albedo.png", to_uint8(albedo[0]))
    else:
        texture = dilate(texture, layout)
    texture = to_uint8(texture[0])
    if "texture" in outputs:
        write_png_atomic(folder / "texture.png", texture)
        write_png_atomic(folder / "visibility.png", to_uint8(unwrapped.visibility[0])[..., 0])  # grey levels
    return texture


def _gltf_mesh(face: FaceResult, model: ModelFiles, texture: np.ndarray | None) -> GltfMesh:
    """The GLB of ``face``: the fitted mesh as the neutral mesh plus the expression morph targets at the fitted
    weights, its model-space normals, and the photo ``texture`` (when made)."""
    vertices = face.vertices_model[0].double().cpu().numpy()
    deltas = model.expression_deltas
    weights = face.code["expression"][0].double().cpu().numpy() if deltas is not None else np.zeros(0)
    neutral = vertices - np.tensordot(weights, deltas[: len(weights)], 1) if len(weights) else vertices
    normals = vertex_normals(face.vertices_model[:1].float().cpu(), torch.from_numpy(model.faces))[0].numpy()
    return model.gltf_mesh(neutral, normals, weights, None if texture is None else png_bytes(texture))


def _photo_region(
    photo: np.ndarray, to_photo: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``photo`` (H, W, 3) under the crop of ``size`` (H, W) (:func:`_photo_box`, at least one pixel),
    and the map from crop pixels to that part: only those pixels are converted to float for the texture, not a
    whole many-megapixel photo."""
    height, width = size
    x0, y0, x1, y1 = _photo_box(to_photo, (-0.5, -0.5, width - 0.5, height - 0.5), photo.shape[:2])
    x1, y1 = min(max(x1, x0 + 1), photo.shape[1]), min(max(y1, y0 + 1), photo.shape[0])
    x0, y0 = min(x0, x1 - 1), min(y0, y1 - 1)
    region = photo[y0:y1, x0:x1].copy()  # a copy: the photo may be shared and read-only
    return region, _shifted(to_photo, x0, y0)


def _photo_box(
    to_photo: np.ndarray, box: tuple[float, float, float, float], photo_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) photo pixels (end exclusive, possibly empty) under the crop-pixel ``box`` (left, top,
    right, bottom) mapped by ``to_photo`` (2, 3), plus a margin of 2 pixels, clipped to the photo of
    ``photo_size`` (H, W)."""
    left, top, right, bottom = box
    corners = apply_affine(to_photo, np.array([[left, top], [right, top], [left, bottom], [right, bottom]]))
    height, width = photo_size
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 2, 0, [width, height])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 3, 0, [width, height])
    return int(x0), int(y0), int(x1), int(y1)


def _shifted(to_photo: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """``to_photo`` (2, 3) followed by a shift to the photo region that starts at pixel (``x0``, ``y0``)."""
    return to_photo - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])


def _overlay(
    face: FaceResult, to_photo: np.ndarray | None, face_triangles: np.ndarray | None = None
) -> np.ndarray:
    """The render blended over the original photo (or the crop), with detected and fitted landmarks; only the
    pixels of ``face_triangles`` (F,) bool when given. On a photo only the render's footprint is warped and
    blended (the rest is the photo as it is), so the cost follows the face's size, not the photo's."""
    render = to_uint8(face.render[0]).astype(np.float32)
    mask = face.render_mask[0, 0].cpu().numpy().astype(np.float32)
    if face_triangles is not None:
        triangle = face.fragments.pix_to_face[0].cpu().numpy()
        mask = mask * ((triangle >= 0) & face_triangles[np.maximum(triangle, 0) % len(face_triangles)])
    landmarks, detected = face.landmarks[0].cpu().numpy(), face.detected[0].cpu().numpy()
    if face.photo is not None and to_photo is not None:
        base = face.photo.copy()
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        if len(rows):  # the mask's box grown by a pixel, which bilinear warping reaches
            box = (cols[0] - 1.5, rows[0] - 1.5, cols[-1] + 1.5, rows[-1] + 1.5)
            x0, y0, x1, y1 = _photo_box(to_photo, box, base.shape[:2])
            region, shifted, size = base[y0:y1, x0:x1], _shifted(to_photo, x0, y0), (x1 - x0, y1 - y0)
            if region.size:
                render = cv2.warpAffine(render, shifted, size, flags=cv2.INTER_LINEAR)
                mask = cv2.warpAffine(mask, shifted, size, flags=cv2.INTER_LINEAR)
                region[...] = _blend(region, render, mask)
        landmarks, detected = apply_affine(to_photo, landmarks), apply_affine(to_photo, detected)
    else:
        base = _blend(to_uint8(face.crop[0]), render, mask)
    radius = max(
        1, round(float(np.ptp(detected, axis=0).max()) / 100)
    )  # dots scale with the face, not the photo
    base = draw_landmarks(base, detected, (0, 220, 0), radius)
    return draw_landmarks(base, landmarks, (230, 0, 0), radius)


def _blend(base: np.ndarray, render: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: ``render`` (H, W, 3) float 0-255 over ``base`` (H, W, 3) uint8 at 0.6 x ``mask`` (H, W)."""
    alpha = 0.6 * mask[..., None]
    return (base * (1 - alpha) + render * alpha).round().astype(np.uint8)


def _readable(face: FaceResult, landmarks_photo: np.ndarray, model: ModelFiles) -> dict:
    code = {k: v[0].cpu().double().numpy() for k, v in face.code.items()}
    pitch, yaw, roll = (math.degrees(a) for a in code["rotation"])
    expression = code["expression"].round(5).tolist()
    record = {
        "key": face.key,
        "source": face.meta.get("source"),
        "photo_path": face.meta.get("photo_path"),
        "face_index": face.meta.get("face_index"),
        "detector": face.meta.get("detector"),
        "video": {name: face.meta.get(name) for name in ("video", "frame", "time")}
        if face.meta.get("video") is not None
        else None,
        "pose_degrees": {"pitch": pitch, "yaw": yaw, "roll": roll},
        "translation_code": code["translation"].tolist(),
        "camera_from_model": {
            "rotation": face.camera_rotation[0].cpu().numpy().round(6).tolist(),
            "translation": face.camera_translation[0].cpu().numpy().round(6).tolist(),
            "note": "x_camera = rotation @ x_model + translation (OpenCV axes, model units)",
        },
        "sh_light_rgb_x9": code["light"].reshape(3, 9).round(5).tolist(),
        "shape": code["shape"].round(5).tolist(),
        "expression": dict(zip(model.expression_names, expression, strict=True))
        if model.expression_names
        else expression,
        "albedo": code["albedo"].round(5).tolist(),
        "landmarks_photo_px": np.round(landmarks_photo, 2).tolist(),
        "landmarks_3d_camera": face.vertices[0, model.landmark_indices].cpu().numpy().round(5).tolist(),
        "landmarks_3d_model": face.vertices_model[0, model.landmark_indices].cpu().numpy().round(5).tolist(),
        "intrinsics_crop": face.K[0].cpu().numpy().round(4).tolist(),
        "crop_from_photo": face.meta.get("transform"),
    }
    if face.refinement is not None:
        steps, first, last = face.refinement
        record["refinement"] = {
            "steps": steps,
            "loss_first": first,
            "loss_last": last,
        }
    return record


def read_code_records(folder: Path) -> dict[str, list[dict]]:
    """The ``code.json`` records under ``folder`` (a ``facegen predict --out``), grouped by the stem of the photo
    file they came from (its name in the photo folder, not where a link to it leads), in folder order."""
    records: dict[str, list[dict]] = {}
    for path in sorted(Path(folder).glob(f"*/{DONE_FILE}")):
        record = json.loads(path.read_text())
        records.setdefault(Path(record.get("source") or record.get("photo_path") or "").stem, []).append(
            record
        )
    return records
